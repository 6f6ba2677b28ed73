//! Syntax rules shared by the JSON Schema (as regular expressions, for editors) and by
//! validation (as small matchers, so that the crate needs no regex engine at run time).
//!
//! Each `*_PATTERN` constant and its `is_*` function accept exactly the same strings; a test
//! (`tests/it/validate_rules.rs`, `patterns_match_their_rust_matchers`) checks them against each other with a real regex engine.

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

/// A GUID (the client id of an app registration, P3 application users; a SKU id): 8-4-4-4-12
/// hexadecimal digits, either case.
pub const GUID_PATTERN: &str =
    r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$";

/// [`GUID_PATTERN`]: 8-4-4-4-12 hexadecimal digits.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

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

/// The parts of a dotted version as numbers: digits only (`u64::MAX` when too large), any
/// other part (empty, `x`, `+1`, ` 1`) is 0. The order of [`cmp_version`] and of
/// [`version_key`].
fn version_parts(s: &str) -> Vec<u64> {
    s.split('.')
        .map(|p| {
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                0 // `str::parse` would read `+1` as 1
            } else {
                p.parse::<u64>().unwrap_or(u64::MAX)
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    /// Issue 11 item 2: the one version comparison (U1, U2, U5) at its edges.
    #[test]
    fn cmp_version_edges() {
        let u64_max = u64::MAX.to_string();
        let too_large = format!("8.{u64_max}0.0"); // ten times u64::MAX
        let cases: [(&str, &str, std::cmp::Ordering); 14] = [
            // numerically, part by part, not as text
            ("8.10.0", "8.9.0", Greater),
            ("8.9.0", "8.10.0", Less),
            ("9.0.0", "8.99.99", Greater),
            ("8.1.0.123", "8.1.0.99", Greater),
            // a missing part is less than a zero part
            ("8.1", "8.1.0", Less),
            ("8.1.0", "8.1.0.0", Less),
            // equal, also with leading zeros
            ("8.1.0", "8.1.0", Equal),
            ("8.01.0", "8.1.0", Equal),
            // a part too large for u64 saturates at u64::MAX
            (&too_large, "8.18446744073709551615.0", Equal),
            (&too_large, "8.18446744073709551614.0", Greater),
            // a part that is not a number counts as 0
            ("8.x.0", "8.0.0", Equal),
            ("8.x.0", "8.1.0", Less),
            ("8..0", "8.0.0", Equal),
            ("8.+1.0", "8.0.0", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(cmp_version(a, b), want, "{a} vs {b}");
            assert_eq!(cmp_version(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    /// Issue 11 item 2: `version_key` (U1/U5) takes only versions and orders them as
    /// `cmp_version` does.
    #[test]
    fn version_key_orders_as_cmp_version() {
        assert_eq!(version_key("8.1.0"), Some(vec![8, 1, 0]));
        assert_eq!(
            version_key("8.99999999999999999999.0"),
            Some(vec![8, u64::MAX, 0])
        );
        for not_a_version in ["8.1", "8.x.0", "8..0", "8.+1.0", "8.1.0.0.0", "", "v8.1.0"] {
            assert_eq!(version_key(not_a_version), None, "{not_a_version}");
        }
        let versions = [
            "8.1.0", "8.1.0.0", "8.10.0", "8.9.0", "8.9.0.1", "9.0.0", "8.01.0",
        ];
        for a in versions {
            for b in versions {
                assert_eq!(
                    version_key(a).cmp(&version_key(b)),
                    cmp_version(a, b),
                    "{a} vs {b}"
                );
            }
        }
    }
}
