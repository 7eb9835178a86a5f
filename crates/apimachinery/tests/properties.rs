//! Property tests: everything that parses or merges client input must never panic, whatever the input,
//! and a few algebraic properties that the implementations promise.

use proptest::prelude::*;
use proxylab_apimachinery::patch::{
    apply_patch, json_merge_patch, json_patch, strategic_merge_patch,
};
use proxylab_apimachinery::registry::resources;
use proxylab_apimachinery::selector::{FieldSelector, LabelSelector};
use proxylab_apimachinery::table::{IncludeObject, to_table};
use proxylab_apimachinery::validation::{validate, validate_update};
use serde_json::{Map, Value, json};

/// Keys biased towards the names that matter to strategic merge (directives, merge keys, known lists).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z]{1,6}",
        1 => Just("$patch".to_string()),
        1 => Just("$retainKeys".to_string()),
        1 => Just("$deleteFromPrimitiveList/finalizers".to_string()),
        1 => Just("$setElementOrder/containers".to_string()),
        1 => Just("containers".to_string()),
        1 => Just("ports".to_string()),
        1 => Just("name".to_string()),
        1 => Just("containerPort".to_string()),
        1 => Just("spec".to_string()),
        1 => Just("metadata".to_string()),
        1 => Just("finalizers".to_string()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            "[a-z0-9]{0,5}",
            Just("delete".to_string()),
            Just("replace".to_string()),
            Just("merge".to_string())
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn json_patch_ops() -> impl Strategy<Value = Value> {
    let op = (
        prop_oneof![
            Just("add"),
            Just("remove"),
            Just("replace"),
            Just("move"),
            Just("copy"),
            Just("test"),
            Just("bogus")
        ],
        "(/[a-z0-9~\\-]{0,3}){0,3}",
        "(/[a-z0-9~\\-]{0,3}){0,3}",
        json_value(),
    )
        .prop_map(
            |(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}),
        );
    prop::collection::vec(op, 0..6).prop_map(Value::Array)
}

proptest! {
    #[test]
    fn label_selector_parse_never_panics(s in "\\PC{0,40}") {
        let _ = LabelSelector::parse(&s);
    }

    #[test]
    fn label_selector_parse_grammar_chars_never_panics(s in "[a-z0-9=!(),<> .\\-/_]{0,40}|in|notin") {
        if let Ok(sel) = LabelSelector::parse(&s) {
            // What parses prints canonically and reparses to the same selector.
            let printed = sel.to_string();
            let again = LabelSelector::parse(&printed);
            prop_assert_eq!(again.as_ref().ok(), Some(&sel), "printed {:?}", printed);
            let _ = sel.matches(None);
        }
    }

    #[test]
    fn field_selector_parse_never_panics(s in "[a-zA-Z.=!,\\\\ ]{0,40}") {
        if let Ok(sel) = FieldSelector::parse(&s) {
            let printed = sel.to_string();
            prop_assert_eq!(FieldSelector::parse(&printed).ok(), Some(sel.clone()), "printed {:?}", printed);
            for info in resources() {
                let _ = sel.validate(info);
            }
            let _ = sel.matches(&json!({"metadata":{"name":"a"}}));
        }
    }

    #[test]
    fn field_selector_arbitrary_unicode_never_panics(s in "\\PC{0,40}") {
        let _ = FieldSelector::parse(&s);
    }

    #[test]
    fn merge_patch_is_idempotent(target in json_value(), patch in json_value()) {
        let mut once = target.clone();
        json_merge_patch(&mut once, &patch);
        let mut twice = once.clone();
        json_merge_patch(&mut twice, &patch);
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn json_patch_never_panics_and_is_atomic(target in json_value(), ops in json_patch_ops()) {
        let mut t = target.clone();
        if json_patch(&mut t, &ops).is_err() {
            prop_assert_eq!(t, target);
        }
    }

    #[test]
    fn strategic_merge_never_panics_and_is_atomic(target in json_value(), patch in json_value()) {
        for info in resources() {
            let mut t = target.clone();
            if strategic_merge_patch(&mut t, &patch, info).is_err() {
                prop_assert_eq!(&t, &target);
            }
        }
    }

    #[test]
    fn strategic_merge_of_pod_like_patches_never_panics(
        containers in prop::collection::vec(json_value(), 0..4),
        patch_containers in prop::collection::vec(json_value(), 0..4),
    ) {
        let pods = proxylab_apimachinery::registry::lookup("", "v1", "pods").expect("pods");
        let mut target = json!({"kind":"Pod","metadata":{"name":"p","finalizers":["a"]},"spec":{"containers":containers}});
        let patch = json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]},"spec":{"containers":patch_containers}});
        let _ = strategic_merge_patch(&mut target, &patch, pods);
    }

    #[test]
    fn apply_patch_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..64), ct in 0usize..5) {
        let types = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
            "text/plain",
        ];
        let svc = proxylab_apimachinery::registry::lookup("", "v1", "services").expect("svc");
        let mut t = json!({"spec":{"ports":[{"port":80}]}});
        let _ = apply_patch(types[ct], &mut t, &body, svc);
    }

    #[test]
    fn validation_and_tables_never_panic(obj in json_value(), old in json_value()) {
        let now: jiff::Timestamp = "2026-11-28T12:00:00Z".parse().expect("ts");
        for info in resources() {
            let _ = validate(info, &obj);
            let _ = validate_update(info, &old, &obj);
            let t = to_table(info, std::slice::from_ref(&obj), IncludeObject::Metadata, now);
            let cols = t["columnDefinitions"].as_array().map_or(0, Vec::len);
            prop_assert_eq!(t["rows"][0]["cells"].as_array().map_or(0, Vec::len), cols);
        }
    }
}
