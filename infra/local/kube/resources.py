"""The resources the stand-in serves, at the paths the API server serves
them, and the discovery documents that list them.

Only what the kubernetes-deploy action applies is here, plus Pods (made by
the rollout, read-only) and Secrets and ConfigMaps; External Secrets
Operator's two kinds are served as if its CRDs were installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The version the stand-in reports, and the one whose OpenAPI schemas validate what it receives.
KUBERNETES_VERSION = "1.32"


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    applicable: bool = True  # False: made by the stand-in only, never applied or deleted by a client

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified_plural(self) -> str:
        """As messages name it: `deployments.apps`, `namespaces`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
PODS = Resource("", "v1", "pods", "Pod", applicable=False)
SECRETS = Resource("", "v1", "secrets", "Secret")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
EXTERNAL_SECRETS = Resource("external-secrets.io", "v1", "externalsecrets", "ExternalSecret")
CLUSTER_SECRET_STORES = Resource("external-secrets.io", "v1", "clustersecretstores", "ClusterSecretStore",
                                 namespaced=False)

RESOURCES = (
    NAMESPACES,
    Resource("", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("", "v1", "services", "Service"),
    SECRETS,
    Resource("", "v1", "configmaps", "ConfigMap"),
    PODS,
    DEPLOYMENTS,
    Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress"),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    EXTERNAL_SECRETS,
    CLUSTER_SECRET_STORES,
)


def find(group: str, version: str, plural: str) -> Resource | None:
    for resource in RESOURCES:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


def version_info() -> dict[str, str]:
    major, minor = KUBERNETES_VERSION.split(".")
    return {"major": major, "minor": minor, "gitVersion": f"v{KUBERNETES_VERSION}.0-eks-local",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.4", "compiler": "gc",
            "platform": "linux/amd64"}


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}


def api_groups() -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for resource in RESOURCES:
        if resource.group and resource.version not in groups.setdefault(resource.group, []):
            groups[resource.group].append(resource.version)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": group, "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
         "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]}}
        for group, versions in groups.items()
    ]}


def api_resources(group: str, version: str) -> dict[str, Any] | None:
    served = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
    if not served:
        return None
    listed = []
    for resource in served:
        verbs = ["delete", "get", "list", "patch"] if resource.applicable else ["get", "list"]
        listed.append({"name": resource.plural, "singularName": resource.kind.lower(),
                       "namespaced": resource.namespaced, "kind": resource.kind, "verbs": verbs})
        listed.append({"name": f"{resource.plural}/status", "singularName": "",
                       "namespaced": resource.namespaced, "kind": resource.kind, "verbs": ["get"]})
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": listed}
