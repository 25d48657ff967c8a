//! `taskrun run`'s input parser fed any bytes: it must give tasks, or errors that each name the
//! file on one line of printable text, and never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use taskrun_operator::standalone::parse;

const FILE: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    // `taskrun run` refuses a file that is not UTF-8 before parsing; replacing the bad bytes
    // still lets every mutation reach the parser.
    let text = String::from_utf8_lossy(data);
    match parse(FILE, &text) {
        Ok(tasks) => assert!(!tasks.is_empty(), "no tasks and no error"),
        Err(errors) => {
            assert!(!errors.is_empty(), "an empty list of errors");
            for error in &errors {
                let message = error.to_string();
                assert!(message.starts_with(&format!("{FILE}: ")), "{message:?}");
                assert!(!message.contains(char::is_control), "{message:?}");
            }
        }
    }
});
