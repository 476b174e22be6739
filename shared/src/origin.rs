//! `allowed_origins`: which browser origins may connect. Empty allows only requests without an
//! `Origin` header (non-browser clients); patterns may use `*` (`https://*.example.com`,
//! `http://localhost:*`), and `"*"` allows every origin. Matching ignores case.

/// Whether a request with this `Origin` header (None: no header) may go on.
pub fn allowed(patterns: &[String], origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    let origin = origin.to_ascii_lowercase();
    patterns.iter().any(|p| glob(&p.to_ascii_lowercase(), &origin))
}

/// `*` matches any run of characters (none included).
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    if parts.is_empty() {
        return rest.is_empty();
    }
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::allowed;

    fn p(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_origin_header_is_always_allowed() {
        assert!(allowed(&[], None));
    }

    #[test]
    fn empty_list_refuses_browsers() {
        assert!(!allowed(&[], Some("http://localhost:3000")));
    }

    #[test]
    fn exact_star_and_globs() {
        assert!(allowed(&p(&["*"]), Some("https://anything.example")));
        assert!(allowed(&p(&["http://allowed.example"]), Some("HTTP://Allowed.Example")));
        assert!(!allowed(&p(&["http://allowed.example"]), Some("http://evil.example")));
        assert!(allowed(&p(&["https://*.example.com"]), Some("https://a.b.example.com")));
        assert!(!allowed(&p(&["https://*.example.com"]), Some("https://example.org")));
        assert!(allowed(&p(&["http://localhost:*"]), Some("http://localhost:5173")));
        assert!(!allowed(&p(&["http://localhost:*"]), Some("http://localhost.evil.com")));
    }
}
