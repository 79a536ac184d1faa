"""The only code that talks to the world: git, processes, Prefect, and (later) Kubernetes,
Docker and the registry. Each adapter is a small class or function set with one job."""
