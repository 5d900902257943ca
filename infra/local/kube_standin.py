"""A Kubernetes API server for the local stack, reached exactly as PAO
reaches EKS.

No kube-apiserver, kind or k3s can run here, and moto's EKS clusters have
an endpoint that does not resolve and a CA that is random text. This
stand-in serves one API per cluster at
`https://127.0.0.1:PORT/clusters/<cluster name>/...`, over TLS with a CA made
at stack start, and the launcher (moto_launcher.py,
`eks_endpoints_on_kube_standin`) gives each EKS cluster that endpoint and
that CA. So the kubernetes-deploy action runs unchanged: DescribeCluster,
an EKS bearer token, server-side apply of typed objects, polling the
rollout, deleting the namespace.

What it checks as EKS does: the bearer token (kube/token.py: an STS
GetCallerIdentity URL presigned for this cluster with the local
credentials, at most 15 minutes old), every applied object against the
Kubernetes OpenAPI schemas of version 1.32 and a subset of External
Secrets Operator's CRDs (kube/validation.py), field ownership of
server-side apply (kube/apply.py), namespaces that must exist and not be
terminating. What it plays: Deployment rollouts with pods (an image whose
tag ends in `-unpullable` never pulls, and pods whose environment names a
Secret that is not there wait for it, `CreateContainerConfigError`, until
it is written), ExternalSecrets syncing into Secrets that hold a
placeholder, never a real value, namespace deletion (kube/controllers.py).
State is in memory and gone when it stops; only the certificates are kept,
in --state-dir.

Each cluster also holds, from its first request on, what the platform
team's bootstrap installs on its EKS clusters before PAO deploys anything
(kube/bootstrap.py): the namespace `external-secrets` and a
ClusterSecretStore for Secrets Manager, named by --cluster-secret-store
(default `aws-secrets-manager`) in the region of --region (default
`us-east-1`), Ready from the start and labelled
`app.kubernetes.io/managed-by: platform-bootstrap`. An empty
--cluster-secret-store installs neither: a cluster the platform did not
bootstrap.

    GET /_health                   200 when serving
    GET /_objects[?cluster=NAME]   every cluster's objects, for tests and the demo (no token)

The credentials tokens must be signed with come from the environment
(PAO_KUBE_ACCESS_KEY_ID, PAO_KUBE_SECRET_ACCESS_KEY; both `test` by default,
as the local stack's), never the command line (ps shows it).

Usage: kube_standin.py --port PORT --state-dir DIR [--cluster-secret-store NAME] [--region REGION]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kube import bootstrap, server, tls
from kube.controllers import Controllers
from kube.store import Store
from kube.token import Credentials
from kube.validation import Validator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True, help="where the CA and server certificate are kept")
    parser.add_argument("--cluster-secret-store", default=bootstrap.DEFAULT_STORE, metavar="NAME",
                        help="the ClusterSecretStore (Secrets Manager, Ready) every cluster holds from the start, "
                             "with the namespace external-secrets, as the platform's bootstrap installs them; "
                             "empty: neither, a cluster the platform did not bootstrap "
                             f"(default {bootstrap.DEFAULT_STORE})")
    parser.add_argument("--region", default=bootstrap.DEFAULT_REGION,
                        help=f"the region that ClusterSecretStore reads from (default {bootstrap.DEFAULT_REGION})")
    args = parser.parse_args()
    credentials = Credentials(os.environ.get("PAO_KUBE_ACCESS_KEY_ID", "test"),
                              os.environ.get("PAO_KUBE_SECRET_ACCESS_KEY", "test"))
    try:
        store = Store(Validator(), bootstrap.addons(args.cluster_secret_store, args.region))
    except ValueError as err:
        parser.error(str(err))
    certificates = tls.ensure(args.state_dir)
    httpd = server.build(args.port, certificates, store, Controllers(store), credentials)
    print(f"serving https://127.0.0.1:{args.port}/clusters/<name>; CA {certificates.ca}", flush=True)
    httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
