//! Replays the fuzz corpus (`fuzz/corpus/untrusted_input/`) through the same function the fuzz
//! target calls, [`rotate_postgres::untrusted::parse_untrusted`], on stable Rust in every
//! `make test`; then mutates every seed at random (proptest) the way a fuzzer would.
//!
//! A seed's name says what the parsers must make of it: `ok-event-rotation-*` a rotation event of
//! a known step, `ok-event-preflight*` a preflight event, `ok-secret-*` PostgreSQL credentials,
//! `odd-event-*` a rotation event of an unknown step, `bad-*` nothing at all, `any-*` no
//! expectation (only: no panic, no password in an error).

use proptest::prelude::*;
use rotate_postgres::untrusted::{parse_untrusted, Accepted};
use std::path::PathBuf;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/untrusted_input");
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    seeds
}

#[test]
fn every_seed_is_read_as_its_name_says() {
    let seeds = corpus();
    assert!(seeds.len() >= 30, "the corpus has {} seeds", seeds.len());
    let nothing = Accepted::default();
    for (name, bytes) in &seeds {
        let got = parse_untrusted(bytes);
        let expected = if name.starts_with("ok-event-rotation-") {
            got.rotation_event && got.known_step
        } else if name.starts_with("ok-event-preflight") {
            got.preflight_event
        } else if name.starts_with("ok-secret-") {
            got.credentials
        } else if name.starts_with("odd-event-") {
            got.rotation_event && !got.known_step
        } else if name.starts_with("bad-") {
            got == nothing
        } else {
            assert!(name.starts_with("any-"), "{name}: unknown prefix");
            true
        };
        assert!(expected, "{name}: {got:?}");
    }
    println!("replayed {} corpus seeds", seeds.len());
}

/// One edit a fuzzer would make.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Splice(usize, &'static str),
}

fn edit() -> impl Strategy<Value = Edit> {
    const TOKENS: &[&str] = &[
        "\"",
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "null",
        "true",
        "-1",
        "1e999",
        "\\u0000",
        "\u{7f}",
        "\"port\":",
        "\"password\":",
        "\"engine\":",
        "\"Step\":",
        "\"ssl\":",
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), proptest::sample::select(TOKENS)).prop_map(|(i, t)| Edit::Splice(i, t)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len();
        match *e {
            Edit::Replace(i, b) if len > 0 => bytes[i % len] = b,
            Edit::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Edit::Remove(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Edit::Splice(i, t) => {
                let at = i % (len + 1);
                bytes.splice(at..at, t.bytes());
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Mutated seeds never panic the parsers and never put the password in an error.
    #[test]
    fn mutated_seeds_never_panic(seed in 0usize..1000, edits in proptest::collection::vec(edit(), 1..8)) {
        let seeds = corpus();
        let (_, bytes) = &seeds[seed % seeds.len()];
        parse_untrusted(&apply(bytes.clone(), &edits));
    }

    /// Arbitrary bytes too.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        parse_untrusted(&bytes);
    }
}
