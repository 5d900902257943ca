"""Faults the tests inject into the emulator, by tag.

moto makes every RDS instance `available` and every EKS cluster and node
group `ACTIVE` the moment it is created, so the states a driver must handle
when AWS fails (an instance in `incompatible-parameters`, a cluster
`FAILED`, a node group `CREATE_FAILED` with its health issues) never
happen locally. A resource created with one of these tags takes the status
the tag names instead, as AWS would report it:

    emulator:db-status         RDS DB instance status, such as incompatible-parameters
    emulator:cluster-status    EKS cluster status, such as FAILED
    emulator:nodegroup-status  EKS node group status, such as CREATE_FAILED

A catalog item sets them like any other tag (its actions' `tags`), so the
product code runs unchanged and never knows; nothing else in the emulator
changes. Only the local stack loads this module.
"""

from __future__ import annotations

from typing import Any

from moto.eks.models import Cluster, Nodegroup
from moto.rds.models import DBInstance

DB_STATUS = "emulator:db-status"
CLUSTER_STATUS = "emulator:cluster-status"
NODEGROUP_STATUS = "emulator:nodegroup-status"


def _after_init(cls: type, read_status: Any, apply: Any) -> None:
    original = cls.__init__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        status = read_status(self)
        if status:
            apply(self, status)

    cls.__init__ = __init__


def _db_status(instance: DBInstance) -> str | None:
    for tag in instance.tags or []:
        if tag.get("Key") == DB_STATUS:
            return tag.get("Value")
    return None


def _set_status(resource: Any, status: str) -> None:
    resource.status = status


def _nodegroup_failed(nodegroup: Nodegroup, status: str) -> None:
    nodegroup.status = status
    nodegroup.health = {
        "issues": [{
            "code": "AsgInstanceLaunchFailures",
            "message": "Instance failed to launch (fault injected by the local stack)",
            "resourceIds": [group["name"] for group in nodegroup.resources["autoScalingGroups"]],
        }]
    }


def install() -> None:
    _after_init(DBInstance, _db_status, _set_status)
    _after_init(Cluster, lambda cluster: (cluster.tags or {}).get(CLUSTER_STATUS), _set_status)
    _after_init(Nodegroup, lambda group: (group.tags or {}).get(NODEGROUP_STATUS), _nodegroup_failed)
