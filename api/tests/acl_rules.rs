//! Property tests for the ACL rule language (outside input: policies sent to
//! `/v1/acl/policy` and `isthmus acl policy create`): parsing never panics,
//! and a policy rendered from random rules parses back to the same rules.
//! The tests live in `mod acl` so `cargo test -p isthmus-api acl` selects them.

mod acl {
    use isthmus_api::acl::rules::{Family, Level, NamedRule};
    use isthmus_api::acl::{Access, Authorizer, Resource, Rules};
    use proptest::prelude::*;

    /// 256 cases and a fixed seed unless `PROPTEST_CASES`/`PROPTEST_RNG_SEED` say otherwise.
    fn config() -> ProptestConfig {
        let mut config = ProptestConfig::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            config.cases = 256;
        }
        if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
            config.rng_seed = proptest::test_runner::RngSeed::Fixed(0x00ac_1013);
        }
        config
    }

    fn level(list_allowed: bool) -> impl Strategy<Value = Level> {
        let levels = if list_allowed {
            vec![Level::Deny, Level::Read, Level::List, Level::Write]
        } else {
            vec![Level::Deny, Level::Read, Level::Write]
        };
        proptest::sample::select(levels)
    }

    fn named_rule() -> impl Strategy<Value = NamedRule> {
        let family = proptest::sample::select(Family::ALL.to_vec());
        // Names with the characters that need escaping and a few non-ASCII ones.
        let name = "[a-z0-9/_.\\-\"\\\\${}%é\n\t ]{0,16}";
        (family, any::<bool>(), name).prop_flat_map(|(family, prefix, name)| {
            let intentions = if family == Family::Service {
                proptest::option::of(level(false)).boxed()
            } else {
                Just(None).boxed()
            };
            (level(family == Family::Key), intentions).prop_map(move |(policy, intentions)| {
                NamedRule {
                    family,
                    prefix,
                    name: name.clone(),
                    policy,
                    intentions,
                }
            })
        })
    }

    fn rules() -> impl Strategy<Value = Rules> {
        let global = || proptest::option::of(level(false));
        (
            proptest::collection::vec(named_rule(), 0..12),
            (global(), global(), global(), global(), global()),
        )
            .prop_map(|(named, (acl, keyring, mesh, operator, peering))| Rules {
                named,
                acl,
                keyring,
                mesh,
                operator,
                peering,
            })
    }

    fn exercise(rules: &Rules) {
        let authz = Authorizer::new("x", false, std::slice::from_ref(rules));
        for resource in [Resource::Service, Resource::Node, Resource::Intention] {
            for name in ["", "web", "*", "é"] {
                let _ = authz.check(resource, name, Access::Write);
            }
            let _ = authz.allows_all(resource, Access::Read);
            let _ = authz.allows_any(resource, Access::Write);
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn acl_rules_render_and_parse_back(rules in rules()) {
            let text = rules.to_hcl();
            let parsed = Rules::parse(&text);
            prop_assert_eq!(parsed.as_ref(), Ok(&rules), "{}", text);
            exercise(&rules);
        }

        #[test]
        fn acl_rules_parse_never_panics(text in "\\PC{0,200}") {
            if let Ok(rules) = Rules::parse(&text) {
                prop_assert_eq!(Rules::parse(&rules.to_hcl()), Ok(rules.clone()));
                exercise(&rules);
            }
        }

        #[test]
        fn acl_rules_parse_never_panics_near_valid_input(
            rules in rules(),
            cut in any::<prop::sample::Index>(),
            insert in "[{}\\[\\]\"=,#/*\\\\ \na-z]{0,4}",
        ) {
            let text = rules.to_hcl();
            let mut at = cut.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mutated = format!("{}{insert}{}", &text[..at], &text[at..]);
            if let Ok(parsed) = Rules::parse(&mutated) {
                prop_assert_eq!(Rules::parse(&parsed.to_hcl()), Ok(parsed.clone()));
            }
            let json_like = format!("{{{}", &text[..at]);
            let _ = Rules::parse(&json_like);
        }
    }
}
