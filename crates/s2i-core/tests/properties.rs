//! Property tests of every parser of untrusted text: image references, SOURCE, environment files
//! and `-e` values, `.s2iignore`, `src:dest` mappings and `image_metadata.json`. None may panic,
//! and what they accept keeps the invariants the pipeline relies on.
//!
//! CI runs a few thousand cases per property. For a long run (a million per property):
//!
//! ```sh
//! PROPTEST_CASES=1000000 cargo test --release -p s2i-core --test properties
//! ```

use std::path::Path;

use proptest::prelude::*;
use s2i_core::env;
use s2i_core::ignore::IgnoreRules;
use s2i_core::image_ref::{parse_output_tag, ImageRef};
use s2i_core::labels::parse_image_metadata;
use s2i_core::mapping::{clean_path, parse_specs};
use s2i_core::config::{ParsedSource, SourceSpec};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Text built from the characters that matter to a parser, and some that should not.
fn text(alphabet: &'static str, max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(alphabet.chars().collect::<Vec<_>>()), 0..max).prop_map(|v| v.into_iter().collect()),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn image_references_round_trip(s in text("abcAZ019._-:/@#+ sha256", 80)) {
        if let Ok(r) = ImageRef::parse(&s) {
            prop_assert_eq!(ImageRef::parse(&r.to_string()).unwrap(), r.clone());
            let n = r.normalized();
            prop_assert!(ImageRef::parse(&n).is_ok(), "normalized {} of {} parses", n, s);
            prop_assert!(!r.remote_path().is_empty());
            prop_assert!(!s.contains(char::is_whitespace));
        }
        if let Ok(t) = parse_output_tag(&s) {
            prop_assert!(t.digest.is_none());
        }
    }

    #[test]
    fn sources_parse_without_panic_and_keep_fragments_out_of_urls(s in text("abz019./:@#~-_", 60)) {
        if let Ok(p) = ParsedSource::parse(&s) {
            match &p.spec {
                SourceSpec::GitRemote(u) | SourceSpec::HttpArchive(u) => prop_assert!(!u.contains('#'), "{}", u),
                SourceSpec::Local(_) => {}
            }
            if let Some(f) = &p.fragment {
                prop_assert!(!f.is_empty());
            }
        }
    }

    #[test]
    fn environment_lines_give_named_single_line_variables(s in text("AZaz09=# \\n\\t\"'/", 200)) {
        for vars in [env::parse_s2i_environment(&s, Path::new("e")), env::parse_environment_file(&s, Path::new("e"))] {
            for v in vars {
                prop_assert!(!v.name.is_empty());
                prop_assert!(!v.name.contains('=') && !v.name.contains('\n'));
                prop_assert!(!v.value.contains('\n'));
            }
        }
        if let Ok(v) = s2i_core::config::parse_env_flag(&s) {
            prop_assert!(!v.name.trim().is_empty() && !v.name.contains('='));
        }
    }

    #[test]
    fn ignore_rules_never_panic_and_never_reach_outside(rules in text("*?[]!/.a-z\\n#\\\\ ", 120), path in text("abc./ ", 40)) {
        let r = IgnoreRules::parse(&rules, Path::new(".s2iignore"));
        let _ = r.is_ignored(&path);
        // A pattern can only name paths inside the root: one that climbs out matches nothing.
        let outside = format!("../{path}");
        if !rules.contains('*') && !rules.contains('?') && !rules.contains('[') {
            prop_assert!(!r.is_ignored(&outside) || rules.lines().any(|l| l.trim().trim_start_matches('!') == outside));
        }
    }

    #[test]
    fn mappings_are_clean_and_checked(s in text("/ab.;:'\"*$ ", 60)) {
        if let Ok(ms) = parse_specs(&s, "--inject") {
            for m in ms {
                prop_assert!(!m.source.is_empty());
                prop_assert_eq!(clean_path(&m.source), m.source.clone());
                prop_assert_eq!(clean_path(&m.destination), m.destination.clone());
                for side in [&m.source, &m.destination] {
                    prop_assert!(!side.contains([';', '*', '"', '\'', '$']), "{}", side);
                }
            }
        }
    }

    #[test]
    fn clean_paths_are_idempotent(s in text("/ab.", 40)) {
        let once = clean_path(&s);
        prop_assert_eq!(clean_path(&once), once.clone());
        prop_assert!(!once.contains("//"));
    }

    #[test]
    fn image_metadata_gives_string_pairs_or_an_error(s in text("{}[]\\\":,labels ab1", 120)) {
        if let Ok(pairs) = parse_image_metadata(s.as_bytes()) {
            prop_assert!(s.contains("labels"));
            let _ = pairs;
        }
    }
}
