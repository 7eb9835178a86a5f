//! The `sh -c` subset: words, quotes, `$VAR` expansion and the list operators `;` `&&` `||`.
//!
//! Honest about the rest: pipes, redirections, background jobs, subshells, command substitution,
//! globbing and control flow need processes and a writable file system, which these pods do not
//! have, so they are refused with a message naming what is unsupported rather than half-done.

/// One piece of a word, expanded when the command runs (`$?` changes as commands finish).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Lit(String),
    /// `$NAME`, `${NAME}`, `$?`, `$$`, `$0`…
    Var(String),
}

/// A word: pieces concatenated after expansion.
pub type Word = Vec<Piece>;

/// How a command connects to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sep {
    /// `;` or a newline (or the end).
    Seq,
    /// `&&`: run the next only on success.
    And,
    /// `||`: run the next only on failure.
    Or,
}

/// A parsed command list.
pub type Script = Vec<(Vec<Word>, Sep)>;

/// Parses a command line.
pub fn parse(line: &str) -> Result<Script, String> {
    let mut script: Script = Vec::new();
    let mut words: Vec<Word> = Vec::new();
    let mut word: Word = Vec::new();
    let mut in_word = false;
    let mut lit = String::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;

    fn flush_lit(lit: &mut String, word: &mut Word) {
        if !lit.is_empty() {
            word.push(Piece::Lit(std::mem::take(lit)));
        }
    }

    macro_rules! end_word {
        () => {
            if in_word {
                flush_lit(&mut lit, &mut word);
                words.push(std::mem::take(&mut word));
                in_word = false;
            }
        };
    }

    let unsupported = |what: &str| {
        Err(format!(
            "sh: {what} are not supported here (these pods run no processes and have no writable files); \
             use ; && || between built-in commands"
        ))
    };

    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => {
                end_word!();
                i += 1;
            }
            '\n' | ';' => {
                end_word!();
                if !words.is_empty() {
                    script.push((std::mem::take(&mut words), Sep::Seq));
                }
                i += 1;
            }
            '&' if chars.get(i + 1) == Some(&'&') => {
                end_word!();
                if words.is_empty() {
                    return Err("sh: syntax error near unexpected token `&&'".into());
                }
                script.push((std::mem::take(&mut words), Sep::And));
                i += 2;
            }
            '|' if chars.get(i + 1) == Some(&'|') => {
                end_word!();
                if words.is_empty() {
                    return Err("sh: syntax error near unexpected token `||'".into());
                }
                script.push((std::mem::take(&mut words), Sep::Or));
                i += 2;
            }
            '|' => return unsupported("pipes (|)"),
            '&' => return unsupported("background jobs (&)"),
            '>' | '<' => return unsupported("redirections (> <)"),
            '(' | ')' => return unsupported("subshells ( )"),
            '`' => return unsupported("command substitutions (`…`)"),
            '#' if !in_word => {
                // A comment runs to the end of the line.
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\\' => {
                in_word = true;
                match chars.get(i + 1) {
                    Some('\n') => {}
                    Some(&next) => lit.push(next),
                    None => {}
                }
                i += 2;
            }
            '\'' => {
                in_word = true;
                let close = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or("sh: unterminated quoted string")?;
                lit.extend(&chars[i + 1..i + 1 + close]);
                i += close + 2;
            }
            '"' => {
                in_word = true;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("sh: unterminated quoted string".into()),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            match chars.get(i + 1) {
                                Some(&n) if matches!(n, '"' | '\\' | '$' | '`') => lit.push(n),
                                Some('\n') => {}
                                Some(&n) => {
                                    lit.push('\\');
                                    lit.push(n);
                                }
                                None => return Err("sh: unterminated quoted string".into()),
                            }
                            i += 2;
                        }
                        Some('$') => {
                            i = variable(&chars, i, &mut lit, &mut word)?;
                        }
                        Some('`') => return unsupported("command substitutions (`…`)"),
                        Some(&c) => {
                            lit.push(c);
                            i += 1;
                        }
                    }
                }
            }
            '$' => {
                in_word = true;
                i = variable(&chars, i, &mut lit, &mut word)?;
            }
            // Globs (`*`, `?`, `[`) stay literal, as sh leaves a pattern that matches nothing.
            c => {
                in_word = true;
                lit.push(c);
                i += 1;
            }
        }
    }
    if in_word {
        flush_lit(&mut lit, &mut word);
        words.push(word);
    }
    if !words.is_empty() {
        script.push((words, Sep::Seq));
    } else if let Some((_, sep)) = script.last()
        && *sep != Sep::Seq
    {
        return Err("sh: syntax error: unexpected end of input".into());
    }
    Ok(script)
}

/// Parses a `$…` at `chars[i]`; returns the index after it.
fn variable(chars: &[char], i: usize, lit: &mut String, word: &mut Word) -> Result<usize, String> {
    let flush = |lit: &mut String, word: &mut Word| {
        if !lit.is_empty() {
            word.push(Piece::Lit(std::mem::take(lit)));
        }
    };
    match chars.get(i + 1) {
        Some('{') => {
            let close = chars[i + 2..]
                .iter()
                .position(|&c| c == '}')
                .ok_or("sh: bad substitution: missing }")?;
            let name: String = chars[i + 2..i + 2 + close].iter().collect();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "sh: ${{{name}}}: bad substitution (only ${{NAME}} is supported)"
                ));
            }
            flush(lit, word);
            word.push(Piece::Var(name));
            Ok(i + 3 + close)
        }
        Some('(') => Err(
            "sh: command substitutions ($(…)) are not supported here (these pods run no processes)"
                .into(),
        ),
        Some(&c) if c == '?' || c == '$' || c == '#' || c.is_ascii_digit() => {
            flush(lit, word);
            word.push(Piece::Var(c.to_string()));
            Ok(i + 2)
        }
        Some(&c) if c.is_ascii_alphabetic() || c == '_' => {
            let len = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            flush(lit, word);
            word.push(Piece::Var(chars[i + 1..i + 1 + len].iter().collect()));
            Ok(i + 1 + len)
        }
        _ => {
            lit.push('$');
            Ok(i + 1)
        }
    }
}

/// Expands a word with `lookup` for variables (unset: empty).
pub fn expand(word: &Word, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    word.iter()
        .map(|p| match p {
            Piece::Lit(s) => s.clone(),
            Piece::Var(name) => lookup(name).unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(script: &Script, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<(Vec<String>, Sep)> {
        script
            .iter()
            .map(|(ws, sep)| (ws.iter().map(|w| expand(w, lookup)).collect(), *sep))
            .collect()
    }

    #[test]
    fn lists_quotes_and_variables() {
        let vars = |n: &str| match n {
            "HOME" => Some("/root".to_owned()),
            "?" => Some("0".to_owned()),
            _ => None,
        };
        let script = parse(r#"echo "home is $HOME" 'not $HOME'; false || echo a\ b && echo ${HOME}x $? $NOPE. # c"#)
            .expect("parse");
        assert_eq!(
            words(&script, &vars),
            vec![
                (
                    vec!["echo".into(), "home is /root".into(), "not $HOME".into()],
                    Sep::Seq
                ),
                (vec!["false".into()], Sep::Or),
                (vec!["echo".into(), "a b".into()], Sep::And),
                (
                    vec!["echo".into(), "/rootx".into(), "0".into(), ".".into()],
                    Sep::Seq
                ),
            ]
        );
        assert_eq!(
            words(&parse("echo ''").expect("empty word"), &vars)[0].0,
            ["echo", ""]
        );
        assert!(parse("").expect("empty").is_empty());
    }

    #[test]
    fn unsupported_syntax_is_named() {
        for (line, what) in [
            ("ls | grep x", "pipes"),
            ("echo x > /tmp/f", "redirections"),
            ("sleep 1 &", "background"),
            ("(cd /)", "subshells"),
            ("echo $(hostname)", "command substitutions"),
            ("echo `hostname`", "command substitutions"),
        ] {
            let err = parse(line).expect_err(line);
            assert!(err.contains(what), "{line}: {err}");
        }
        assert!(parse("echo 'open").is_err());
        assert!(parse("echo ok &&").is_err());
        assert!(parse("&& echo").is_err());
        assert!(parse("echo ${a-b}").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(line in ".{0,200}") {
            if let Ok(script) = parse(&line) {
                let _ = words(&script, &|_| Some("v".into()));
            }
        }
    }
}
