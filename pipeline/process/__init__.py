"""Process plumbing, no domain logic: pinning workers to cores (`affinity`), quieting third-party start-up
noise (`quiet`), the Beam worker entry point (`beam_worker`) and a warm helper process (`warm_process`)."""
