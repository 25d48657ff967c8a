//! Text from outside (container output, daemon errors, names users chose) made safe to send to
//! the API server, which reads server-side-apply patches as YAML: a YAML reader refuses control
//! characters and non-characters even inside a JSON string, and folds some line breaks.

/// What stands in for a character the API server would refuse.
pub const REPLACEMENT: char = '\u{FFFD}';

/// `text` with every character the API server would refuse or alter replaced, cut to at most
/// `max_bytes` at a character boundary, keeping the start.
pub fn api_safe(text: &str, max_bytes: usize) -> String {
    let safe = clean(text);
    let mut end = safe.len().min(max_bytes);
    while !safe.is_char_boundary(end) {
        end -= 1;
    }
    safe[..end].to_string()
}

/// Like [`api_safe`], keeping the end of `text` instead of its start: for output tails.
pub fn api_safe_tail(text: &str, max_bytes: usize) -> String {
    let safe = clean(text);
    let mut start = safe.len().saturating_sub(max_bytes);
    while !safe.is_char_boundary(start) {
        start += 1;
    }
    safe[start..].to_string()
}

fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c < ' ' || is_yaml_printable(c) {
                c
            } else {
                REPLACEMENT
            }
        })
        .collect()
}

/// The YAML 1.2 printable set, less the byte order mark, which a YAML reader may drop. The
/// C0 controls are outside it but travel escaped in JSON (`\u001b`), so they are kept.
fn is_yaml_printable(c: char) -> bool {
    matches!(c,
        '\u{20}'..='\u{7E}'
        | '\u{A0}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FEFE}'
        | '\u{FF00}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the API server does with a string field of a patch: reads it as YAML.
    fn through_yaml(text: &str) -> Result<String, String> {
        let json = serde_json::to_string(text).map_err(|e| e.to_string())?;
        serde_yaml::from_str::<String>(&json).map_err(|e| e.to_string())
    }

    #[test]
    fn every_character_comes_through_a_yaml_reader_unchanged_once_safe() {
        for code in 0..=0x10FFFFu32 {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let text = format!("a{c}b");
            let safe = api_safe(&text, 64);
            assert_eq!(
                through_yaml(&safe).as_deref(),
                Ok(safe.as_str()),
                "U+{code:04X}"
            );
            if c < ' ' || is_yaml_printable(c) {
                assert_eq!(safe, text, "U+{code:04X} is kept");
            }
        }
    }

    #[test]
    fn the_reported_characters_are_refused_raw_and_pass_once_safe() {
        for text in ["x\u{7f}y", "x\u{80}y", "x\u{9f}y", "x\u{FFFE}y"] {
            assert!(through_yaml(text).is_err(), "{text:?} is refused raw");
            assert!(through_yaml(&api_safe(text, 64)).is_ok());
        }
        assert_eq!(api_safe("x\u{7f}y", 64), "x\u{FFFD}y");
    }

    #[test]
    fn every_byte_value_of_output_is_made_safe() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let output = String::from_utf8_lossy(&bytes);
        let safe = api_safe_tail(&output, 4096);
        assert_eq!(through_yaml(&safe).as_deref(), Ok(safe.as_str()));
        assert!(safe.contains("0123456789") && safe.contains('\n') && safe.contains('\t'));
    }

    #[test]
    fn cuts_keep_whole_characters() {
        assert_eq!(api_safe("aéb", 2), "a");
        assert_eq!(api_safe_tail("aéb", 2), "b");
        assert_eq!(api_safe_tail("hello", 3), "llo");
        assert_eq!(api_safe("hello", 10), "hello");
    }

    proptest! {
        #[test]
        fn any_text_is_accepted_and_bounded(text in any::<String>(), max in 0usize..64) {
            for safe in [api_safe(&text, max), api_safe_tail(&text, max)] {
                prop_assert!(safe.len() <= max);
                prop_assert_eq!(through_yaml(&safe), Ok(safe.clone()));
            }
        }

        #[test]
        fn any_bytes_of_output_are_accepted(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let safe = api_safe_tail(&String::from_utf8_lossy(&bytes), 4096);
            prop_assert_eq!(through_yaml(&safe), Ok(safe.clone()));
        }
    }
}
