"""Running a model: compiled passes over probes, class targets, caches, the device."""
