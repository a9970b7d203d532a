"""Storage LUN expansion: array drivers (``ontap``, ``pure``, ``powerstore``), the host side (rescan and grow
on ESXi and Linux) and the ``storage.expand_lun`` pipeline."""
