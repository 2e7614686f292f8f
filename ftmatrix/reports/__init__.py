"""Tables and plots from job folders on disk. Never imports torch."""
