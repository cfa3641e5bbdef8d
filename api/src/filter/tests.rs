use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn entry() -> Value {
    json!({
        "Node": {"Node": "web-node-1", "Meta": {"rack": "r1"}},
        "Service": {
            "ID": "web-1", "Service": "web", "Tags": ["v1", "primary"],
            "Meta": {"version": "1.2", "team name": "edge"}, "Port": 8080,
            "EnableTagOverride": false, "Proxy": null,
            "Weights": {"Passing": 1, "Warning": 1}
        },
        "Checks": [
            {"CheckID": "serfHealth", "Status": "passing"},
            {"CheckID": "web-ttl", "Status": "critical"}
        ]
    })
}

fn eval(text: &str) -> bool {
    Filter::parse(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .matches(&entry())
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[test]
fn equality_on_strings_numbers_and_bools() {
    assert!(eval("Service.Service == web"));
    assert!(eval(r#"Service.Service == "web""#));
    assert!(eval("Service.Service == `web`"));
    assert!(!eval("Service.Service != web"));
    assert!(eval("Service.Port == 8080"));
    assert!(eval(r#"Service.Port == "8080""#));
    assert!(eval("Service.EnableTagOverride == false"));
    assert!(eval("Service.Weights.Passing==1"));
}

#[test]
fn lists_and_maps() {
    assert!(eval("Service.Tags contains v1"));
    assert!(eval("v1 in Service.Tags"));
    assert!(eval("Service.Tags not contains v3"));
    assert!(eval("v3 not in Service.Tags"));
    assert!(eval("version in Service.Meta"));
    assert!(eval("Service.Meta.version == \"1.2\""));
    assert!(eval(r#"Service.Meta["team name"] == edge"#));
    assert!(eval("Service.ID contains \"eb-\""));
    // Any check's status.
    assert!(eval("Checks.Status == critical"));
    assert!(eval("Checks.Status == passing"));
    assert!(!eval("Checks.Status == warning"));
    assert!(eval("Checks.CheckID contains ttl"));
}

#[test]
fn absent_fields_and_emptiness() {
    assert!(!eval("Service.Meta.missing == x"));
    assert!(eval("Service.Meta.missing != x"));
    assert!(eval("Service.Meta.missing is empty"));
    assert!(eval("Service.Proxy is empty"));
    assert!(!eval("Service.Proxy.DestinationServiceName == web"));
    assert!(eval("Service.Tags is not empty"));
    assert!(eval("Unknown not contains x"));
}

#[test]
fn regexes() {
    assert!(eval(r#"Node.Node matches "^web-node-[0-9]+$""#));
    assert!(eval(r#"Node.Node not matches "^db""#));
    let e = Filter::parse(r#"Node.Node matches "(""#).unwrap_err();
    assert!(matches!(e, FilterError::Regex { .. }), "{e}");
    let long = format!("Node matches \"{}\"", "a".repeat(MAX_REGEX_BYTES + 1));
    assert!(matches!(
        Filter::parse(&long),
        Err(FilterError::Regex { .. })
    ));
    // A short pattern whose automaton would be huge.
    let e = Filter::parse(r"Node matches `\w{1000}\w{1000}\w{1000}`").unwrap_err();
    assert!(matches!(e, FilterError::Regex { .. }), "{e}");
}

#[test]
fn boolean_structure() {
    assert!(eval("Service.Service == web and Service.Port == 8080"));
    assert!(eval("Service.Service == db or Service.Port == 8080"));
    assert!(!eval("not Service.Service == web"));
    assert!(eval("not (Service.Service == db or Service.Port == 1)"));
    assert!(eval("( Service.Service == web )"));
    assert!(eval("not not Service.Service == web"));
    // `and` binds tighter than `or`.
    assert!(eval(
        "Service.Port == 1 and Service.Port == 2 or Service.Service == web"
    ));
    assert!(!eval(
        "Service.Port == 1 and (Service.Port == 2 or Service.Service == web)"
    ));
}

#[test]
fn keywords_are_selectors_where_a_selector_is_expected() {
    let doc = json!({"not": "x", "notable": 1, "in": ["a"]});
    let f = Filter::parse("not == x and notable == 1 and a in in").unwrap();
    assert!(f.matches(&doc).unwrap());
}

#[test]
fn refused_expressions() {
    for bad in [
        "",
        "Service",
        "Service ==",
        "== web",
        "Service.Tags contains",
        "(Service == web",
        "Service == web)",
        "Service == \"web",
        "Service is",
        "a == b and",
        "a == b andc == d",
        "1abc == 2",
        "a == 01",
        "a[\"x\" == 1",
        "a == \"\\q\"",
    ] {
        let e = Filter::parse(bad).expect_err(bad);
        assert!(matches!(e, FilterError::Syntax { .. }), "{bad:?}: {e:?}");
    }
    let deep = format!("{}a == b{}", "(".repeat(40), ")".repeat(40));
    assert_eq!(
        Filter::parse(&deep),
        Err(FilterError::TooDeep { max: MAX_NESTING })
    );
    let nots = format!("{}a == b", "not ".repeat(40));
    assert_eq!(
        Filter::parse(&nots),
        Err(FilterError::TooDeep { max: MAX_NESTING })
    );
    let long = "a == b or ".repeat(500) + "a == b";
    assert!(matches!(
        Filter::parse(&long),
        Err(FilterError::TooLong { .. })
    ));
    let segments = vec!["a"; MAX_SELECTOR_SEGMENTS + 1].join(".");
    assert!(matches!(
        Filter::parse(&format!("{segments} == 1")),
        Err(FilterError::SelectorTooLong { .. })
    ));
}

#[test]
fn first_fields_are_checked_against_the_type() {
    let fields = struct_fields::<crate::catalog::ServiceEntry>().unwrap();
    let ok = Filter::parse("Service.Anything == x and not Checks is empty").unwrap();
    assert_eq!(ok.check_fields(fields), Ok(()));
    let typo = Filter::parse("Service.Port == 1 or Servise.Port == 1").unwrap();
    assert_eq!(
        typo.check_fields(fields),
        Err(FilterError::UnknownSelector("Servise".into()))
    );
    assert_eq!(
        typo.check_fields(fields).unwrap_err().to_string(),
        "Selector \"Servise\" is not valid"
    );
}

#[test]
fn a_long_flat_chain_is_fine() {
    // Near the length limit, far past the nesting limit if it recursed.
    let chain = vec!["Service.Port == 8080"; 150].join(" and ");
    assert!(chain.len() < MAX_EXPRESSION_BYTES);
    assert!(eval(&chain));
}

#[test]
fn values_that_do_not_fit_the_field_are_refused_when_met() {
    let f = Filter::parse("Service.Port == abc").unwrap();
    assert!(matches!(
        f.matches(&entry()),
        Err(FilterError::BadValue { .. })
    ));
    let f = Filter::parse("Service.Tags == v1").unwrap();
    assert!(matches!(
        f.matches(&entry()),
        Err(FilterError::Unsupported { .. })
    ));
    let f = Filter::parse("Service.Port.Inner == 1").unwrap();
    assert!(matches!(
        f.matches(&entry()),
        Err(FilterError::NotNestable { .. })
    ));
}

#[test]
fn syntax_errors_say_where() {
    let e = Filter::parse("Service.Port ==\n  ").unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("2:3 (18): "), "{text}");
    assert!(text.contains("expected"), "{text}");
}

#[test]
fn retain_filters_typed_items_by_their_json() {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Row {
        name: &'static str,
        tags: Vec<&'static str>,
    }
    let mut rows = vec![
        Row {
            name: "a",
            tags: vec!["x"],
        },
        Row {
            name: "b",
            tags: vec![],
        },
    ];
    Filter::parse("Tags is not empty")
        .unwrap()
        .retain(&mut rows)
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, "a");
}

fn identifier() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_]{0,6}"
}

fn selector() -> impl Strategy<Value = Selector> {
    (
        identifier(),
        prop::collection::vec(
            prop_oneof![identifier(), "[0-9]{1,3}", "[ -~]{0,6}", "\\PC{0,4}"],
            0..4,
        ),
    )
        .prop_map(|(first, rest)| {
            let mut path = vec![first];
            path.extend(rest);
            Selector(path)
        })
}

fn op() -> impl Strategy<Value = MatchOp> {
    prop::sample::select(vec![
        MatchOp::Equal,
        MatchOp::NotEqual,
        MatchOp::In,
        MatchOp::NotIn,
        MatchOp::Contains,
        MatchOp::NotContains,
        MatchOp::IsEmpty,
        MatchOp::IsNotEmpty,
        MatchOp::Matches,
        MatchOp::NotMatches,
    ])
}

fn leaf() -> impl Strategy<Value = Expr> {
    (selector(), op(), "\\PC{0,8}").prop_map(|(selector, op, raw)| {
        let value = match op {
            MatchOp::IsEmpty | MatchOp::IsNotEmpty => None,
            // Patterns that always compile.
            MatchOp::Matches | MatchOp::NotMatches => Some(MatchValue::new(regex::escape(&raw))),
            _ => Some(MatchValue::new(raw)),
        };
        Expr::Match(Match {
            selector,
            op,
            value,
        })
    })
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-z0-9]{0,4}".prop_map(Value::from),
    ];
    scalar.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,3}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Whatever the text, parsing answers (no panic, no stack overflow).
    #[test]
    fn parsing_never_panics(text in "\\PC{0,64}") {
        let _ = Filter::parse(&text);
    }

    #[test]
    fn parsing_grammar_like_text_never_panics(
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "a", "b.c", "(", ")", " ", "==", "!=", "not", "and", "or", "in",
                "contains", "is", "empty", "matches", "\"x\"", "`y`", "1", "-2.5",
                "[\"k\"]", ".0", "\"", "`",
            ]),
            0..24,
        )
    ) {
        let text = parts.join(" ");
        if let Ok(filter) = Filter::parse(&text) {
            // Whatever parsed also prints back to the same tree.
            let again = Filter::parse(&filter.to_string()).unwrap();
            prop_assert_eq!(again, filter);
        }
    }

    /// Printing a tree and parsing the text gives the tree back.
    #[test]
    fn printing_round_trips(tree in expr()) {
        let filter = Filter { expr: tree };
        let text = filter.to_string();
        let parsed = Filter::parse(&text);
        prop_assert_eq!(parsed.as_ref().map(Filter::expr), Ok(filter.expr()), "{}", text);
    }

    /// `not` negates, `and`/`or` agree with a model of themselves, and
    /// evaluation never panics on any JSON.
    #[test]
    fn evaluation_follows_the_boolean_model(tree in expr(), doc in json_value()) {
        let filter = Filter { expr: tree.clone() };
        let direct = filter.matches(&doc);
        let negated = Filter { expr: Expr::Not(Box::new(tree.clone())) }.matches(&doc);
        match (&direct, &negated) {
            (Ok(d), Ok(n)) => prop_assert_eq!(*d, !*n),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(false, "{:?} vs {:?}", direct, negated),
        }
        if let Expr::And(parts) | Expr::Or(parts) = &tree {
            let results: Result<Vec<bool>, _> = parts
                .iter()
                .map(|p| Filter { expr: p.clone() }.matches(&doc))
                .collect();
            if let (Ok(results), Ok(direct)) = (results, &direct) {
                let model = if matches!(tree, Expr::And(_)) {
                    results.iter().all(|r| *r)
                } else {
                    results.iter().any(|r| *r)
                };
                prop_assert_eq!(*direct, model);
            }
        }
    }
}
