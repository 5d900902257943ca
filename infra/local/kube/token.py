"""EKS bearer tokens, checked as EKS checks them.

A token is `k8s-aws-v1.` and the unpadded base64url of a presigned STS
GetCallerIdentity URL whose signature covers the header
`x-k8s-aws-id: <cluster name>`. In EKS, aws-iam-authenticator checks the
URL's form (pkg/token/token.go, `Verify`) and then calls it with that
header: STS answers only if the signature holds. Here the form is checked
the same way and the signature is computed again with the local stack's
credentials instead of asking STS, so a token made for another cluster,
altered, signed with another key or older than 15 minutes is refused.

The rules, in the order they are applied:
- at most 4096 bytes, the `k8s-aws-v1.` prefix, base64url without padding;
- `https`, host `sts.amazonaws.com` or `sts.<region>.amazonaws.com`, path `/`;
- only the authenticator's query parameters (Action, Version, X-Amz-Algorithm,
  X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-Security-Token,
  X-Amz-Signature, X-Amz-SignedHeaders, in any case), each once;
- `Action=GetCallerIdentity`, `Version=2011-06-15`, `X-Amz-Algorithm=AWS4-HMAC-SHA256`;
- `X-Amz-SignedHeaders` exactly `host;x-k8s-aws-id` (the only headers the
  authenticator sends STS that a signature could cover);
- `X-Amz-Expires` an integer from 0 to 900, as the authenticator insists,
  though the URL is honoured for 15 minutes whatever it says;
- `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`) at most 15 minutes old and at most 15
  minutes ahead (STS's own tolerance: "Signature not yet current");
- `X-Amz-Credential` = `<access key>/<date of X-Amz-Date>/<region>/sts/aws4_request`,
  with the local access key and the host's region (us-east-1 for the global host);
- `X-Amz-Signature` = SigV4 of that request with the local secret and the
  header `x-k8s-aws-id` set to the cluster named in the request's path. The
  payload hash may be `UNSIGNED-PAYLOAD` (botocore presigns so) or the hash
  of an empty body (the Go SDK's presigner does): STS accepts both.
`X-Amz-Security-Token`, when present, is covered by the signature like the
rest; its value is not checked (locally there are no sessions).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

PREFIX = "k8s-aws-v1."
MAX_TOKEN_BYTES = 4096
LIFETIME = datetime.timedelta(minutes=15)
SKEW = datetime.timedelta(minutes=15)
GLOBAL_HOST = "sts.amazonaws.com"
REGIONAL_HOST = re.compile(r"^sts\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com$")
PARAMETERS = {"action", "version", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires",
              "x-amz-security-token", "x-amz-signature", "x-amz-signedheaders"}
SIGNED_HEADERS = "host;x-k8s-aws-id"
EMPTY_BODY_HASH = hashlib.sha256(b"").hexdigest()


class TokenRefused(Exception):
    """Why a token was refused: for the stand-in's log, never for the client."""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


def verify(token: str, cluster: str, credentials: Credentials, now: datetime.datetime) -> None:
    url = urlsplit(_decode(token))
    if url.scheme != "https":
        raise TokenRefused(f"unexpected scheme {url.scheme!r} in pre-signed URL")
    region = _region(url.netloc)
    if url.path != "/":
        raise TokenRefused("unexpected path in pre-signed URL")
    params = _parameters(url.query)
    lower = {name.lower(): value for name, value in params.items()}
    _expect(lower, "action", "GetCallerIdentity")
    _expect(lower, "version", "2011-06-15")
    _expect(lower, "x-amz-algorithm", "AWS4-HMAC-SHA256")
    _expect(lower, "x-amz-signedheaders", SIGNED_HEADERS)
    if not re.fullmatch(r"\d+", lower.get("x-amz-expires", "")) or int(lower["x-amz-expires"]) > 900:
        raise TokenRefused(f"invalid X-Amz-Expires parameter in pre-signed URL: {lower.get('x-amz-expires')!r}")
    signed_at = _date(lower.get("x-amz-date", ""), now)
    scope = f"{signed_at:%Y%m%d}/{region}/sts/aws4_request"
    _expect(lower, "x-amz-credential", f"{credentials.access_key_id}/{scope}")
    if "x-amz-signature" not in lower:
        raise TokenRefused("X-Amz-Signature parameter must be present in pre-signed URL")
    unsigned = {name: value for name, value in params.items() if name.lower() != "x-amz-signature"}
    expected = [_signature(url.netloc, unsigned, cluster, lower["x-amz-date"], scope, payload, credentials)
                for payload in ("UNSIGNED-PAYLOAD", EMPTY_BODY_HASH)]
    if not any(hmac.compare_digest(signature, lower["x-amz-signature"]) for signature in expected):
        raise TokenRefused(f"the signature does not match a request for cluster {cluster!r} signed with the local key")


def _decode(token: str) -> str:
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRefused("token is too large")
    if not token.startswith(PREFIX):
        raise TokenRefused(f"token is missing expected {PREFIX!r} prefix")
    encoded = token[len(PREFIX):]
    if "=" in encoded:
        raise TokenRefused("the token's base64url is padded")
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as err:
        raise TokenRefused(f"the token is not base64url: {err}") from None


def _region(host: str) -> str:
    """The region STS signs for at this host: us-east-1 for the global one."""
    if host == GLOBAL_HOST:
        return "us-east-1"
    matched = REGIONAL_HOST.match(host)
    if matched is None:
        raise TokenRefused(f"unexpected hostname {host!r} in pre-signed URL")
    return matched.group(1)


def _parameters(query: str) -> dict[str, str]:
    """The query's parameters, decoded as SigV4 encodes them (`+` is a
    plus, not a space); names outside the authenticator's list, or given
    twice, are refused as the authenticator refuses them."""
    params: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        name, _, value = pair.partition("=")
        name, value = unquote(name), unquote(value)
        if name.lower() not in PARAMETERS:
            raise TokenRefused(f"non-whitelisted query parameter {name!r}")
        if name.lower() in (known.lower() for known in params):
            raise TokenRefused(f"query parameter {name!r} given more than once")
        params[name] = value
    return params


def _expect(lower: dict[str, str], name: str, value: str) -> None:
    if lower.get(name) != value:
        raise TokenRefused(f"{name} is {lower.get(name)!r} in pre-signed URL, expected {value!r}")


def _date(text: str, now: datetime.datetime) -> datetime.datetime:
    try:
        signed_at = datetime.datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise TokenRefused(f"X-Amz-Date {text!r} is not YYYYMMDDTHHMMSSZ") from None
    if now > signed_at + LIFETIME:
        raise TokenRefused(f"X-Amz-Date parameter is expired (15 minute expiration) {text}")
    if signed_at > now + SKEW:
        raise TokenRefused(f"X-Amz-Date {text} is later than now plus 15 minutes")
    return signed_at


def _signature(host: str, params: dict[str, str], cluster: str, amz_date: str, scope: str, payload: str,
               credentials: Credentials) -> str:
    canonical_query = "&".join(
        f"{name}={value}" for name, value in sorted((_encode(n), _encode(v)) for n, v in params.items())
    )
    canonical_request = "\n".join(
        ["GET", "/", canonical_query, f"host:{host}", f"x-k8s-aws-id:{cluster}", "", SIGNED_HEADERS, payload]
    )
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = f"AWS4{credentials.secret_access_key}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")
