"""Attribution graphs run end to end: traced, checked, labeled, kept."""
