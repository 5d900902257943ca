//! The bearer token an EKS cluster accepts, as aws-iam-authenticator
//! defines it: `k8s-aws-v1.` and the URL-safe, unpadded base64 of a
//! presigned STS `GetCallerIdentity` URL whose signature covers the header
//! `x-k8s-aws-id: <cluster name>`. The cluster's authenticator replays the
//! URL to STS to learn who calls; the URL carries a signature, never the
//! secret key. A token names one cluster: it is refused by any other.
//!
//! The authenticator honours a token for 15 minutes from its signing time,
//! whatever `X-Amz-Expires` says; [`Token::fresh`] says when to make another.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use secrecy::SecretString;

pub const PREFIX: &str = "k8s-aws-v1.";
/// The header that binds a token to its cluster.
pub const CLUSTER_HEADER: &str = "x-k8s-aws-id";
/// How long the authenticator honours a token.
pub const LIFETIME: Duration = Duration::from_secs(15 * 60);
/// A token is replaced this long before it runs out, so no call made with
/// it reaches the cluster after its end.
const MARGIN: Duration = Duration::from_secs(2 * 60);
/// What `aws eks get-token` asks for; the authenticator ignores it.
const EXPIRES_IN: Duration = Duration::from_secs(60);

/// Why a token could not be signed (a malformed region or cluster name).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SignError(String);

fn sign_error(err: impl std::fmt::Display) -> SignError {
    SignError(err.to_string())
}

/// A token and when it was signed.
pub struct Token {
    pub value: SecretString,
    signed_at: SystemTime,
}

impl Token {
    /// Signs a token for `cluster` with `credentials` at `now`.
    pub fn sign(
        credentials: Credentials,
        region: &str,
        cluster: &str,
        now: SystemTime,
    ) -> Result<Self, SignError> {
        let url = presigned_url(credentials, region, cluster, now)?;
        let value = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(url));
        Ok(Self {
            value: SecretString::from(value),
            signed_at: now,
        })
    }

    /// Whether the token is still good for a while at `now`.
    pub fn fresh(&self, now: SystemTime) -> bool {
        now.duration_since(self.signed_at)
            .is_ok_and(|age| age + MARGIN < LIFETIME)
    }
}

/// The presigned `GetCallerIdentity` URL of the regional STS endpoint,
/// signing `host` and the cluster header (not sent: the authenticator
/// adds it when it replays the URL).
fn presigned_url(
    credentials: Credentials,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<String, SignError> {
    let host = format!("sts.{region}.amazonaws.com");
    let url = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
    let identity = Identity::from(credentials);
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(EXPIRES_IN);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(sign_error)?
        .into();
    let headers = [("host", host.as_str()), (CLUSTER_HEADER, cluster)];
    let request = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(sign_error)?;
    let (instructions, _signature) = sign(request, &params).map_err(sign_error)?.into_parts();
    let mut signed = http::Request::builder()
        .uri(&url)
        .body(())
        .map_err(sign_error)?;
    instructions.apply_to_request_http1x(&mut signed);
    Ok(signed.uri().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn at(seconds: u64) -> SystemTime {
        // 2026-01-02T03:04:05Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045 + seconds)
    }

    fn example() -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        )
    }

    fn decoded(token: &Token) -> String {
        let value = token.value.expose_secret();
        let encoded = value.strip_prefix(PREFIX).expect("the prefix");
        assert!(!encoded.contains('='), "unpadded");
        String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).expect("base64url")).expect("a URL")
    }

    #[test]
    fn the_token_is_the_url_botocore_presigns_for_aws_eks_get_token() {
        let token = Token::sign(example(), "us-east-1", "pao-test", at(0)).unwrap();
        // What botocore's SigV4QueryAuth gives for the same request, time and
        // keys (`aws eks get-token`): an independent implementation.
        let expected =
            "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15\
            &X-Amz-Algorithm=AWS4-HMAC-SHA256\
            &X-Amz-Credential=AKIDEXAMPLE%2F20260102%2Fus-east-1%2Fsts%2Faws4_request\
            &X-Amz-Date=20260102T030405Z&X-Amz-Expires=60\
            &X-Amz-SignedHeaders=host%3Bx-k8s-aws-id\
            &X-Amz-Signature=dd6641a02691d16ca5d796ccfbd541c3dd303e10266ac31d158c9eceea0557e6";
        let url = decoded(&token);
        let params = |url: &str| {
            let mut pairs: Vec<String> = url
                .split_once('?')
                .map(|(_, query)| query.split('&').map(str::to_string).collect())
                .unwrap_or_default();
            pairs.sort();
            (url.split_once('?').map(|(base, _)| base.to_string()), pairs)
        };
        assert_eq!(params(&url), params(expected));
    }

    #[test]
    fn a_token_names_its_cluster_and_carries_no_secret_key() {
        let one = decoded(&Token::sign(example(), "eu-west-1", "shop-prod", at(0)).unwrap());
        let other = decoded(&Token::sign(example(), "eu-west-1", "shop-dev", at(0)).unwrap());
        assert!(
            one.starts_with("https://sts.eu-west-1.amazonaws.com/?"),
            "{one}"
        );
        assert_ne!(one, other, "the signature covers the cluster");
        assert!(!one.contains("wJalrXUtnFEMI"), "{one}");
    }

    #[test]
    fn a_session_token_is_signed_into_the_url() {
        let session = Credentials::new("AKID", "secret", Some("SESSION".into()), None, "test");
        let url = decoded(&Token::sign(session, "us-east-1", "c", at(0)).unwrap());
        assert!(url.contains("X-Amz-Security-Token=SESSION"), "{url}");
    }

    #[test]
    fn a_token_is_replaced_before_its_fifteen_minutes_run_out() {
        let token = Token::sign(example(), "us-east-1", "c", at(0)).unwrap();
        assert!(token.fresh(at(0)));
        assert!(token.fresh(at(12 * 60)));
        assert!(!token.fresh(at(13 * 60)));
        assert!(!token.fresh(at(20 * 60)));
    }
}
