"""The site status page: per site Operational / Degraded / Outage from open Sev1/Sev2 tickets, scheduled
maintenance windows, recent incidents (``summary``); maintenance windows kept in the database
(``maintenance``)."""
