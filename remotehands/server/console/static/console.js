// remotehands console: a job page follows its job over server-sent events (the server renders the HTML).
document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (!live || !live.dataset.events) return;
  const source = new EventSource(live.dataset.events);
  source.addEventListener("steps", (event) => {
    live.innerHTML = event.data;
    live.dataset.updates = String(Number(live.dataset.updates || "0") + 1);
  });
  source.addEventListener("done", () => {
    source.close();
    live.dataset.done = "true";
  });
});
