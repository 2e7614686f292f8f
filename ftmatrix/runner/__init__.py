"""Run store, planning and job launching. Never imports torch at module level."""
