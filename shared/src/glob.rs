//! Channel name globs for the API's `channels` method: `*` (any run, `:` and `#` included),
//! `?`, `[abc]`/`[a-z]`/`[!a]`, `{alt1,alt2}` and `\` escapes.
//!
//! Patterns come from API callers, so matching is iterative and bounded: braces are expanded
//! up front into at most [`MAX_ALTERNATIVES`] plain patterns of single-character tokens and
//! stars, and each is matched by the classic greedy algorithm with one backtrack point
//! (O(pattern × name) at worst, no recursion, no allocation per name).

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN: usize = 1024;
/// Most plain patterns a pattern's braces may expand to.
pub const MAX_ALTERNATIVES: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Char(char),
    Any,
    Star,
    Class { negate: bool, ranges: Vec<(char, char)> },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Char(x) => *x == c,
            Token::Any => true,
            Token::Star => false,
            Token::Class { negate, ranges } => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negate,
        }
    }
}

/// A compiled pattern: compile once, match many channel names.
#[derive(Clone, Debug)]
pub struct Glob {
    alternatives: Vec<Vec<Token>>,
}

/// Why a pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlobError {
    TooLong,
    TooManyAlternatives,
}

impl std::fmt::Display for GlobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GlobError::TooLong => write!(f, "pattern is longer than {MAX_PATTERN} bytes"),
            GlobError::TooManyAlternatives => {
                write!(f, "pattern's braces expand to more than {MAX_ALTERNATIVES} alternatives")
            }
        }
    }
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.len() > MAX_PATTERN {
            return Err(GlobError::TooLong);
        }
        let alternatives = expand_braces(pattern.chars().collect())?.iter().map(|p| tokens(p)).collect();
        Ok(Glob { alternatives })
    }

    pub fn matches(&self, name: &str) -> bool {
        self.alternatives.iter().any(|tokens| matches(tokens, name))
    }
}

/// Whether `name` matches `pattern`; a refused pattern matches nothing.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    Glob::new(pattern).is_ok_and(|g| g.matches(name))
}

/// The first unescaped `{` that has a `}` after it, and that `}`.
fn first_brace(p: &[char]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => i += 2,
            '{' => {
                let close = p[i + 1..].iter().position(|&c| c == '}')?;
                return Some((i, i + 1 + close));
            }
            _ => i += 1,
        }
    }
    None
}

/// Expands braces, outermost-first and left to right, into plain patterns.
fn expand_braces(pattern: Vec<char>) -> Result<Vec<Vec<char>>, GlobError> {
    let mut done = Vec::new();
    let mut work = vec![pattern];
    while let Some(p) = work.pop() {
        let Some((open, close)) = first_brace(&p) else {
            done.push(p);
            continue;
        };
        for alt in p[open + 1..close].split(|&c| c == ',') {
            if done.len() + work.len() >= MAX_ALTERNATIVES {
                return Err(GlobError::TooManyAlternatives);
            }
            let mut candidate = Vec::with_capacity(p.len());
            candidate.extend_from_slice(&p[..open]);
            candidate.extend_from_slice(alt);
            candidate.extend_from_slice(&p[close + 1..]);
            work.push(candidate);
        }
    }
    Ok(done)
}

fn tokens(p: &[char]) -> Vec<Token> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        let c = p[i];
        i += 1;
        match c {
            '*' => {
                if out.last() != Some(&Token::Star) {
                    out.push(Token::Star); // `**` is `*`
                }
            }
            '?' => out.push(Token::Any),
            '\\' if i < p.len() => {
                out.push(Token::Char(p[i]));
                i += 1;
            }
            '[' => match p[i..].iter().position(|&x| x == ']') {
                Some(len) => {
                    let mut class = &p[i..i + len];
                    i += len + 1;
                    let negate = matches!(class.first(), Some('!' | '^'));
                    if negate {
                        class = &class[1..];
                    }
                    let mut ranges = Vec::new();
                    let mut j = 0;
                    while j < class.len() {
                        if j + 2 < class.len() && class[j + 1] == '-' {
                            ranges.push((class[j], class[j + 2]));
                            j += 3;
                        } else {
                            ranges.push((class[j], class[j]));
                            j += 1;
                        }
                    }
                    out.push(Token::Class { negate, ranges });
                }
                None => out.push(Token::Char('[')),
            },
            c => out.push(Token::Char(c)),
        }
    }
    out
}

/// Greedy wildcard matching: on a mismatch, the last star takes one more character.
fn matches(tokens: &[Token], name: &str) -> bool {
    let (mut t, mut n) = (0usize, 0usize); // token index, byte offset (a char boundary)
                                           // (token after the last star, byte offset where that star's match ends)
    let mut star: Option<(usize, usize)> = None;
    while let Some(c) = name[n..].chars().next() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t + 1, n));
                t += 1;
                continue;
            }
            Some(token) if token.matches(c) => {
                t += 1;
                n += c.len_utf8();
                continue;
            }
            _ => {}
        }
        let Some((after, end)) = star else { return false };
        // `end` <= `n` < len: the star takes the char at `end`.
        let width = name[end..].chars().next().map_or(1, char::len_utf8);
        star = Some((after, end + width));
        t = after;
        n = end + width;
    }
    tokens[t..].iter().all(|token| *token == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "chat:1"));
        assert!(glob_match("chat:*", "chat:1"));
        assert!(!glob_match("chat:*", "news:1"));
        assert!(glob_match("c?at:[0-9]", "chat:7"));
        assert!(!glob_match("chat:[!0-9]", "chat:7"));
        assert!(glob_match("{chat,news}:*", "news:x"));
        assert!(glob_match("{a,{b,c}}x", "c}x"), "braces do not nest: the first closing brace ends the group");
        assert!(glob_match("a\\*", "a*"));
        assert!(!glob_match("a\\*", "ab"));
        assert!(glob_match("a\\{b,c}", "a{b,c}"));
        assert!(glob_match("[x", "[x"));
        assert!(glob_match("{x", "{x"));
        assert!(glob_match("*b*", "aaabaaa"));
        assert!(glob_match("é?", "éü"));
        assert!(glob_match("*ü", "aaü"));
        assert!(!glob_match("a*b", "aaac"));
        assert!(glob_match("*a*a*b", "xaxxab"));
    }

    #[test]
    fn hostile_patterns_take_linear_time_and_no_stack() {
        let name: String = "a".repeat(246);
        let started = std::time::Instant::now();
        assert!(!glob_match("*a*a*a*a*a*a*a*b", &name));
        assert!(glob_match(&"*".repeat(MAX_PATTERN), &name));
        assert!(!glob_match(&"*a".repeat(MAX_PATTERN / 2), &name[..200]));
        // A bound on the work, not a timing test: this is microseconds, the old matcher took minutes.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(Glob::new(&"*".repeat(MAX_PATTERN + 1)).unwrap_err(), GlobError::TooLong);
        assert_eq!(Glob::new(&"{a,b}".repeat(7)).unwrap_err(), GlobError::TooManyAlternatives);
        assert!(Glob::new(&"{a,b}".repeat(6)).is_ok());
    }
}
