//! Syntax rules shared by the JSON Schema (as regular expressions, for editors) and by
//! validation (as small matchers, so that the crate needs no regex engine at run time).
//!
//! Each `*_PATTERN` constant and its `is_*` function accept exactly the same strings; a test
//! (`tests/validate_rules.rs`) checks them against each other with a real regex engine.

/// URL name of an instance (I5): a DNS label, lower case: `https://<url>.crm<N>.dynamics.com`.
pub const URL_NAME_PATTERN: &str = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$";

/// A three-letter currency code in capitals (I3); the code must also be in ISO 4217
/// ([`crate::domain::iso4217`]), which validation checks.
pub const CURRENCY_PATTERN: &str = r"^[A-Z]{3}$";

/// An email address or user principal name (P1, I13): an RFC 5322 dot-atom local part, `@`,
/// and a domain of at least two DNS labels.
pub const EMAIL_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$";

/// The tenant's domain (T1): `<name>.onmicrosoft.com`, lower case.
pub const TENANT_PATTERN: &str = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.onmicrosoft\.com$";

/// A service version (U1): `8.1.0` or `8.1.0.123`.
pub const VERSION_PATTERN: &str = r"^[0-9]+\.[0-9]+\.[0-9]+(?:\.[0-9]+)?$";

/// An RFC 3339 date and time in UTC (U3): `2016-05-14T22:00:00Z`.
pub const DATE_TIME_UTC_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?Z$";

/// Whether `s` is a DNS label of lower-case letters, digits and inner hyphens (1-63 chars).
fn is_dns_label(s: &str, lower_only: bool) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 63 {
        return false;
    }
    let ok = |c: u8| {
        c.is_ascii_digit()
            || c.is_ascii_lowercase()
            || (!lower_only && c.is_ascii_uppercase())
            || c == b'-'
    };
    b.iter().all(|&c| ok(c)) && b[0] != b'-' && b[b.len() - 1] != b'-'
}

/// [`URL_NAME_PATTERN`] (I5).
pub fn is_url_name(s: &str) -> bool {
    is_dns_label(s, true)
}

/// [`CURRENCY_PATTERN`] (I3; the ISO 4217 list is checked separately).
pub fn is_currency_syntax(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|c| c.is_ascii_uppercase())
}

fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&c)
}

/// [`EMAIL_PATTERN`] (P1 user principal names, I13 recipients).
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext));
    let mut labels = 0;
    let domain_ok = domain.split('.').all(|label| {
        labels += 1;
        is_dns_label(label, false)
    });
    local_ok && domain_ok && labels >= 2
}

/// [`TENANT_PATTERN`] (T1).
pub fn is_tenant_domain(s: &str) -> bool {
    s.strip_suffix(".onmicrosoft.com")
        .is_some_and(|name| is_dns_label(name, true))
}

/// [`VERSION_PATTERN`] (U1).
pub fn is_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (3..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

/// The numeric components of a version that satisfies [`is_version`], for comparisons (U5).
/// Components too large for `u64` saturate.
pub fn version_key(s: &str) -> Option<Vec<u64>> {
    is_version(s).then(|| version_parts(s))
}

/// The one version comparison (U1, U2, U5): dotted versions compare numerically, part by
/// part (`8.10.0` > `8.9.0`, `8.1` < `8.1.0`). Used by validation, the planner and every
/// provider. A part that is not a number counts as 0 (the service's versions always are);
/// one too large for `u64` saturates.
pub fn cmp_version(a: &str, b: &str) -> std::cmp::Ordering {
    version_parts(a).cmp(&version_parts(b))
}

fn version_parts(s: &str) -> Vec<u64> {
    s.split('.')
        .map(|p| match p.parse::<u64>() {
            Ok(n) => n,
            Err(_) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => u64::MAX,
            Err(_) => 0,
        })
        .collect()
}

/// [`DATE_TIME_UTC_PATTERN`] and a real date (U3); returns the instant.
pub fn parse_date_time_utc(s: &str) -> Option<std::time::SystemTime> {
    let b = s.as_bytes();
    // The shape first (humantime also accepts a space for `T`, which the schema does not).
    if b.len() < 20 || b[10] != b'T' || b[b.len() - 1] != b'Z' {
        return None;
    }
    // Bytes, not a str slice: the text may hold multi-byte characters anywhere.
    let frac = &b[19..b.len() - 1];
    let frac_ok = frac.is_empty()
        || (frac.len() >= 2 && frac[0] == b'.' && frac[1..].iter().all(u8::is_ascii_digit));
    if !frac_ok {
        return None;
    }
    humantime::parse_rfc3339(s).ok()
}
