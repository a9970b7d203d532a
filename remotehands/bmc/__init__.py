"""Power and boot control: one small interface per capability, one implementation per protocol."""
