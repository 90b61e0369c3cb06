use pretty_assertions::assert_eq;

use super::*;

#[test]
fn substitution_is_single_pass() {
    let out = substitute("a {{x}} b {{y}} {{unknown}}", |k| match k {
        "x" => Some("{{y}}".to_owned()),
        "y" => Some("Y".to_owned()),
        _ => None,
    });
    assert_eq!(out, "a {{y}} b Y {{unknown}}");
}

#[test]
fn step_notes_escalate() {
    assert_eq!(step_note(1, 20), "");
    assert!(step_note(15, 20).contains("most steps"));
    assert!(step_note(18, 20).contains("almost out"));
    assert!(step_note(20, 20).contains("LAST step"));
}

#[test]
fn tools_render_signature_and_indented_doc() {
    let tools = vec![ToolSpec {
        var_keyword: None,
        name: "greet".to_owned(),
        params: vec![
            codepilot_script::ParamSpec {
                name: "name".to_owned(),
                default: None,
                annotation: None,
            },
            codepilot_script::ParamSpec {
                name: "loud".to_owned(),
                default: Some(serde_json::json!(false)),
                annotation: None,
            },
        ],
        doc: "Say hello.\nReturns a string.".to_owned(),
        returns: None,
    }];
    assert_eq!(
        render_tools(&tools),
        "• greet(name, loud=False)\n    Say hello.\n    Returns a string."
    );
}

#[test]
fn the_template_has_exactly_one_dynamic_marker() {
    assert_eq!(TEMPLATE.matches(DYNAMIC_MARKER).count(), 1);
}
