//! Where a 联营 app reaches the tenant's identity host (`domainName` from tenantSync); see
//! the spec's sso.md and docs/test-endpoint.md.

/// The login portal of csm's stand-in (Huawei's real portal is a page on another host).
pub const PORTAL_PATH: &str = "/unified-login/portal";
/// Code and refresh grants, form-encoded (zh-cn_topic_0070649448).
pub const TOKEN_PATH: &str = "/api/v1/oauth2/token";
/// Who logged in, with `Authorization: Bearer` (saascenter_usermanual_0164).
pub const USERINFO_PATH: &str = "/api/v1/oauth2/userinfo";
/// `?redirect_url=…` → 302 (zh-cn_topic_0070649145).
pub const LOGOUT_PATH: &str = "/api/v1/logout";
