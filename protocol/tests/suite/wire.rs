//! The wire contract: how events, envelopes, outcomes and host requests look as JSON, and that they round-trip.

use codepilot_protocol::Event;
use codepilot_protocol::EventEnvelope;
use codepilot_protocol::Outcome;
use codepilot_protocol::PermissionDecision;
use codepilot_protocol::PermissionRequest;
use codepilot_protocol::StreamLine;
use codepilot_protocol::ToolCallEvent;
use codepilot_protocol::TurnCompleted;
use pretty_assertions::assert_eq;
use serde_json::json;

fn round_trip<T>(value: &T) -> String
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, value);
    text
}

#[test]
fn stream_lines_are_tagged_and_round_trip() {
    let event = StreamLine::Event(EventEnvelope {
        agent_id: None,
        parent: None,
        session_id: "s-1".to_owned(),
        turn_id: Some("turn-1".to_owned()),
        seq: 7,
        event: Event::ToolCall(ToolCallEvent {
            call_id: "t1s1c1".to_owned(),
            tool: "execute".to_owned(),
            args: json!({"terminal": "main", "command": "ls"}),
            label: "Running `ls` in main".to_owned(),
        }),
    });
    let done = StreamLine::TurnCompleted(TurnCompleted {
        spend: Default::default(),
        session_id: "s-1".to_owned(),
        turn_id: "turn-1".to_owned(),
        outcome: Outcome::Completed {
            structured: None,
            summary: "done".to_owned(),
            steps: 3,
        },
    });
    insta::assert_snapshot!(
        "stream_lines",
        [round_trip(&event), round_trip(&done)].join("\n")
    );
}

#[test]
fn every_outcome_has_a_status() {
    let all = [
        Outcome::Completed {
            summary: "s".to_owned(),
            steps: 1,
            structured: None,
        },
        Outcome::Replied {
            text: "t".to_owned(),
            steps: 1,
        },
        Outcome::MaxSteps { steps: 20 },
        Outcome::Aborted { steps: 2 },
        Outcome::Completed {
            summary: r#"{"files": 3}"#.to_owned(),
            steps: 2,
            structured: Some(json!({"files": 3})),
        },
        Outcome::LimitExceeded {
            limit: codepilot_protocol::LimitKind::MaxCostUsd,
            scope: codepilot_protocol::LimitScope::Run,
            max: 0.5,
            spent: 0.4875,
            steps: 7,
        },
        Outcome::InvalidOutput {
            errors: vec!["at /files: -1 is less than the minimum of 0".to_owned()],
            last: r#"{"files": -1}"#.to_owned(),
            steps: 4,
        },
    ];
    let lines: Vec<String> = all.iter().map(round_trip).collect();
    insta::assert_snapshot!("outcomes", lines.join("\n"));
    assert_eq!(all[2].steps(), 20);
    assert_eq!(all[0].text(), Some("s"));
    assert_eq!(all[3].text(), None);
    assert_eq!(all[4].structured(), Some(&json!({"files": 3})));
    let statuses: Vec<&str> = all.iter().map(Outcome::status).collect();
    assert_eq!(
        statuses,
        [
            "completed",
            "replied",
            "max_steps",
            "aborted",
            "completed",
            "limit_exceeded",
            "invalid_output"
        ]
    );
}

#[test]
fn permission_requests_and_decisions() {
    let req = PermissionRequest {
        tool: "execute".to_owned(),
        args: json!({"command": "rm -rf build"}),
        description: "Execute in main: rm -rf build".to_owned(),
    };
    let allow = PermissionDecision::Allow;
    let deny = PermissionDecision::Deny {
        reason: Some("not now".to_owned()),
    };
    insta::assert_snapshot!(
        "permission",
        [round_trip(&req), round_trip(&allow), round_trip(&deny)].join("\n")
    );
    let bare: PermissionDecision = serde_json::from_str(r#"{"decision":"deny"}"#).unwrap();
    assert_eq!(bare, PermissionDecision::Deny { reason: None });
}

#[test]
fn the_wire_types_have_a_json_schema() {
    let schema = serde_json::to_value(schemars::schema_for!(StreamLine)).unwrap();
    let defs = schema["$defs"].as_object().unwrap();
    for name in [
        "EventEnvelope",
        "Event",
        "TurnCompleted",
        "Outcome",
        "Usage",
    ] {
        assert!(
            defs.contains_key(name),
            "{name} missing from {:?}",
            defs.keys()
        );
    }
    let request = serde_json::to_value(schemars::schema_for!(PermissionDecision)).unwrap();
    assert!(request.to_string().contains("\"deny\""), "{request}");
}
