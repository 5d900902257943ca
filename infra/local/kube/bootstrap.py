"""What the platform's cluster bootstrap installs on every EKS cluster
before PAO deploys anything to it: here from a cluster's first request on,
beside the namespaces a new cluster has (store.py puts both there).

In EKS the platform team's bootstrap (Terraform or Helm, not PAO) installs
External Secrets Operator in the namespace `external-secrets`, its service
account `external-secrets` (which IRSA lets read Secrets Manager), and one
ClusterSecretStore that every namespace's ExternalSecrets name. The
stand-in holds:

- the namespace `external-secrets` (the operator's own Deployment, service
  account and CRDs are not objects here: controllers.py plays what the
  operator does, and resources.py serves its kinds);
- the ClusterSecretStore named by `--cluster-secret-store` (default
  DEFAULT_STORE): provider aws, service SecretsManager, the region of
  `--region` (default DEFAULT_REGION), auth by the JWT of that service
  account; already `Ready` True with reason `Valid`, as the operator
  reports a store it validated (nothing checks it can reach AWS).

Both carry the label `app.kubernetes.io/managed-by: platform-bootstrap`
and are owned, in `managedFields`, by the field manager MANAGER: they are
not PAO's, and an apply that states one of their fields with another value
is a conflict, as it would be in EKS. An empty store name installs
nothing: a cluster the platform did not bootstrap, where ExternalSecrets
report their store missing. Every add-on is validated when the stand-in
starts, as any applied object is.
"""

from __future__ import annotations

from kube.controllers import store_status
from kube.resources import CLUSTER_SECRET_STORES, NAMESPACES
from kube.store import Addon

MANAGER = "platform-bootstrap"
LABELS = {"app.kubernetes.io/managed-by": MANAGER}
NAMESPACE = "external-secrets"
SERVICE_ACCOUNT = "external-secrets"
DEFAULT_STORE = "aws-secrets-manager"
DEFAULT_REGION = "us-east-1"


def addons(store_name: str, region: str) -> list[Addon]:
    """What the bootstrap installs: nothing when `store_name` is empty."""
    if not store_name:
        return []
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": dict(LABELS)}}
    store = {
        "apiVersion": CLUSTER_SECRET_STORES.api_version, "kind": CLUSTER_SECRET_STORES.kind,
        "metadata": {"name": store_name, "labels": dict(LABELS)},
        "spec": {"provider": {"aws": {
            "service": "SecretsManager", "region": region,
            "auth": {"jwt": {"serviceAccountRef": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}}},
        }}},
    }
    store["status"] = store_status(store)
    return [(NAMESPACES, MANAGER, namespace), (CLUSTER_SECRET_STORES, MANAGER, store)]
