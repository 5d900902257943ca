//! Who is calling. In AWS the HTTP API's JWT authorizer has already checked
//! the token; we read its claims from the request context. Locally
//! (`PAO_AUTH_MODE=dev`) the development headers stand in for a token, and
//! they are honoured in that mode only. No mode trusts an anonymous caller.

use std::collections::BTreeSet;

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::config::ConfigError;

pub const DEV_USER_HEADER: &str = "x-pao-dev-user";
pub const DEV_GROUPS_HEADER: &str = "x-pao-dev-groups";
/// The dev-mode stand-in for a SigV4-signed call: the caller's IAM ARN.
pub const DEV_SERVICE_HEADER: &str = "x-pao-dev-service";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Claims of the JWT the HTTP API's authorizer validated.
    Jwt,
    /// The development headers; only for the local stack.
    Dev,
}

impl AuthMode {
    pub const VARIABLE: &'static str = "PAO_AUTH_MODE";

    pub fn parse(value: Option<&str>) -> Result<Self, ConfigError> {
        match value.map(str::trim) {
            None | Some("") | Some("jwt") => Ok(Self::Jwt),
            Some("dev") => Ok(Self::Dev),
            Some(other) => Err(ConfigError::Invalid {
                name: Self::VARIABLE,
                reason: format!("`{other}` is neither `jwt` nor `dev`"),
            }),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`; the email in dev mode.
    pub subject: String,
    pub email: String,
    pub groups: BTreeSet<String>,
}

impl Principal {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.contains(group)
    }

    /// Whether the caller is in any of `groups` (an empty list admits everyone).
    pub fn in_any(&self, groups: &[String]) -> bool {
        groups.is_empty() || groups.iter().any(|group| self.in_group(group))
    }
}

/// The caller of `req`, or `None` when the request carries no identity this
/// mode accepts.
pub fn principal(req: &Request, mode: AuthMode) -> Option<Principal> {
    match mode {
        AuthMode::Jwt => from_claims(req),
        AuthMode::Dev => from_dev_headers(req),
    }
}

/// The service calling an IAM-authorised route, or `None`. In AWS the
/// route's `AWS_IAM` authorizer has checked the SigV4 signature and the
/// caller's `execute-api:Invoke` permission, and passes the caller's ARN.
/// A service is named by its role, not by one session of it, so all its
/// sessions share their requests; it is a member of `service_group` only,
/// which catalog items name in `access.groups` to admit services.
pub fn service_principal(req: &Request, mode: AuthMode, service_group: &str) -> Option<Principal> {
    let arn = match mode {
        AuthMode::Jwt => {
            let RequestContext::ApiGatewayV2(context) = req.request_context_ref()? else {
                return None;
            };
            context
                .authorizer
                .as_ref()?
                .iam
                .as_ref()?
                .user_arn
                .clone()?
        }
        AuthMode::Dev => req
            .headers()
            .get(DEV_SERVICE_HEADER)?
            .to_str()
            .ok()?
            .trim()
            .to_string(),
    };
    let subject = role_of(&arn)?;
    Some(Principal {
        email: subject.clone(),
        subject,
        groups: BTreeSet::from([service_group.to_string()]),
    })
}

/// `arn:aws:sts::1:assumed-role/Deployer/session-7` → `arn:aws:iam::1:role/Deployer`;
/// other IAM ARNs as they are; anything that is not an ARN → `None`.
fn role_of(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, partition, service, _, account, resource] = parts.as_slice() else {
        return None;
    };
    let well_formed = arn.starts_with("arn:")
        && !partition.is_empty()
        && !resource.is_empty()
        && arn.len() <= 2048
        && !arn.chars().any(char::is_control);
    match (*service, resource.strip_prefix("assumed-role/")) {
        _ if !well_formed => None,
        ("sts", Some(role_and_session)) => {
            let role = role_and_session
                .split('/')
                .next()
                .filter(|r| !r.is_empty())?;
            Some(format!("arn:{partition}:iam::{account}:role/{role}"))
        }
        ("iam" | "sts", _) => Some(arn.to_string()),
        _ => None,
    }
}

fn from_claims(req: &Request) -> Option<Principal> {
    let RequestContext::ApiGatewayV2(context) = req.request_context_ref()? else {
        return None;
    };
    let claims = &context.authorizer.as_ref()?.jwt.as_ref()?.claims;
    let subject = claims.get("sub").filter(|s| !s.is_empty())?.clone();
    let email = claims
        .get("email")
        .cloned()
        .unwrap_or_else(|| subject.clone());
    let groups = claims
        .get("groups")
        .or_else(|| claims.get("cognito:groups"))
        .map(|raw| parse_groups(raw))
        .unwrap_or_default();
    Some(Principal {
        subject,
        email,
        groups,
    })
}

fn from_dev_headers(req: &Request) -> Option<Principal> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let email = header(DEV_USER_HEADER)?.to_string();
    let groups = header(DEV_GROUPS_HEADER)
        .map(parse_groups)
        .unwrap_or_default();
    Some(Principal {
        subject: email.clone(),
        email,
        groups,
    })
}

/// The HTTP API passes an array claim as text such as `[admins developers]`;
/// the dev header is comma-separated.
fn parse_groups(raw: &str) -> BTreeSet<String> {
    raw.trim_matches(|c| c == '[' || c == ']')
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|group| group.trim_matches('"').trim())
        .filter(|group| !group.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], claims: Option<serde_json::Value>) -> Request {
        let mut context = serde_json::json!({
            "accountId": "1", "apiId": "a", "domainName": "d", "domainPrefix": "d",
            "http": {"method": "GET", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "1.1.1.1", "userAgent": "t"},
            "requestId": "r", "routeKey": "GET /", "stage": "$default", "time": "t", "timeEpoch": 0
        });
        if let Some(claims) = claims {
            context["authorizer"] = serde_json::json!({"jwt": {"claims": claims, "scopes": null}});
        }
        let headers: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "GET /", "rawPath": "/", "rawQueryString": "",
            "headers": headers, "requestContext": context, "isBase64Encoded": false
        });
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    #[test]
    fn reads_jwt_claims_with_array_groups() {
        let req = request(
            &[],
            Some(
                serde_json::json!({"sub": "u-1", "email": "a@x.io", "groups": "[admins developers]"}),
            ),
        );
        let principal = principal(&req, AuthMode::Jwt).unwrap();
        assert_eq!(principal.subject, "u-1");
        assert_eq!(principal.email, "a@x.io");
        assert!(principal.in_group("admins") && principal.in_group("developers"));
    }

    #[test]
    fn dev_headers_work_in_dev_mode_only() {
        let req = request(
            &[(DEV_USER_HEADER, "dev@x.io"), (DEV_GROUPS_HEADER, "a, b")],
            None,
        );
        let dev = principal(&req, AuthMode::Dev).unwrap();
        assert_eq!(dev.email, "dev@x.io");
        assert_eq!(
            dev.groups,
            BTreeSet::from(["a".to_string(), "b".to_string()])
        );
        assert_eq!(principal(&req, AuthMode::Jwt), None);
    }

    #[test]
    fn an_anonymous_request_has_no_principal_in_any_mode() {
        let req = request(&[], None);
        assert_eq!(principal(&req, AuthMode::Jwt), None);
        assert_eq!(principal(&req, AuthMode::Dev), None);
        let blank = request(&[(DEV_USER_HEADER, "  ")], None);
        assert_eq!(principal(&blank, AuthMode::Dev), None);
    }

    #[test]
    fn jwt_claims_are_ignored_in_dev_mode() {
        let req = request(&[], Some(serde_json::json!({"sub": "u-1"})));
        assert_eq!(principal(&req, AuthMode::Dev), None);
    }

    #[test]
    fn a_service_is_named_by_its_role_and_given_the_service_group() {
        let mut req = request(&[], None);
        if let Some(RequestContext::ApiGatewayV2(context)) = req.request_context_ref() {
            let mut context = context.clone();
            let authorizer = serde_json::json!({"iam": {
                "accountId": "123", "callerId": "AROA:s", "userId": "AROA:s",
                "userArn": "arn:aws:sts::123:assumed-role/Deployer/ci-run-7"
            }});
            context.authorizer = Some(serde_json::from_value(authorizer).unwrap());
            req.extensions_mut()
                .insert(RequestContext::ApiGatewayV2(context));
        }
        let service = service_principal(&req, AuthMode::Jwt, "services").unwrap();
        assert_eq!(service.subject, "arn:aws:iam::123:role/Deployer");
        assert_eq!(service.groups, BTreeSet::from(["services".to_string()]));
        // The IAM context is not a user, and dev headers are not IAM.
        assert_eq!(principal(&req, AuthMode::Jwt), None);
        assert_eq!(service_principal(&req, AuthMode::Dev, "services"), None);
    }

    #[test]
    fn the_dev_service_header_works_in_dev_mode_only_and_must_be_an_arn() {
        let req = request(&[(DEV_SERVICE_HEADER, "arn:aws:iam::123:user/ci")], None);
        let service = service_principal(&req, AuthMode::Dev, "svc").unwrap();
        assert_eq!(service.subject, "arn:aws:iam::123:user/ci");
        assert_eq!(service_principal(&req, AuthMode::Jwt, "svc"), None);
        for bad in [
            "ci",
            "arn:aws:s3:::bucket/key",
            "arn:aws:sts::1:assumed-role/",
            "",
        ] {
            let req = request(&[(DEV_SERVICE_HEADER, bad)], None);
            assert_eq!(service_principal(&req, AuthMode::Dev, "svc"), None, "{bad}");
        }
    }

    #[test]
    fn the_mode_is_parsed_strictly() {
        assert_eq!(AuthMode::parse(None).unwrap(), AuthMode::Jwt);
        assert_eq!(AuthMode::parse(Some("dev")).unwrap(), AuthMode::Dev);
        assert!(AuthMode::parse(Some("off")).is_err());
    }
}
