//! Credentials as kube-apiserver reads them, for every server that authenticates Kubernetes users
//! (the lab apiserver, the standalone bastion): the `--token-auth-file` format and the bearer token
//! of a request. Client certificates are [`crate::tls::PeerIdentity`].
//!
//! Pure parsing; what a server does with an identity (groups added, anonymous access) is its own
//! business.

use http::HeaderMap;

/// One line of a `--token-auth-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub token: String,
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// A line of a token file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TokenFileError {
    pub line: usize,
    pub message: String,
}

/// Splits one CSV record, honouring double quotes (`a,"b,c"` → `["a", "b,c"]`, `""` inside quotes is a
/// quote), as Go's encoding/csv reads the token file.
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    while let Some(ch) = chars.next() {
        match (in_quotes, ch) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => in_quotes = false,
            (false, '"') if cur.is_empty() => in_quotes = true,
            (false, ',') => fields.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated quote".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// Parses a `--token-auth-file`: `token,user,uid[,"group1,group2"]` per line; blank lines and lines
/// starting with `#` are skipped.
pub fn parse_token_file(text: &str) -> Result<Vec<TokenEntry>, TokenFileError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: &str| TokenFileError {
            line: i + 1,
            message: m.to_owned(),
        };
        let f = csv_fields(line).map_err(|m| err(&m))?;
        if f.len() < 3 {
            return Err(err("expected token,user,uid[,groups]"));
        }
        if f[0].is_empty() || f[1].is_empty() {
            return Err(err("token and user must not be empty"));
        }
        let groups = f
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        out.push(TokenEntry {
            token: f[0].clone(),
            user: f[1].clone(),
            uid: f[2].clone(),
            groups,
        });
    }
    Ok(out)
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let t = parse_token_file("# comment\nabc,admin,1,\"system:masters,devs\"\n\nxyz,bob,2\n")
            .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].groups, ["system:masters", "devs"]);
        assert!(t[1].groups.is_empty());
        assert!(parse_token_file("only,two").is_err());
        assert!(parse_token_file("a,\"b").is_err());
    }

    #[test]
    fn bearer() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }
}
