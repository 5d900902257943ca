"""The local Kubernetes API server stand-in (see infra/local/kube_standin.py):
one concern per module: resources (what is served), tls, token (EKS
tokens), validation, apply (server-side apply), store, bootstrap (what
the platform installs on every cluster), selectors, controllers
(rollouts, External Secrets, namespace deletion), status (errors) and
server (HTTP)."""
