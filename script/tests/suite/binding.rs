//! Argument binding against ToolSpec: positional, keyword, defaults, and every TypeError.

use codepilot_script::FailureKind;
use codepilot_script::ParamSpec;
use codepilot_script::ToolSpec;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::run;
use super::run_err;

#[tokio::test]
async fn positional_keyword_and_defaults_are_bound() {
    let (host, result) = run("execute('main', 'ls')\n\
         execute('main', command='pwd', timeout=30)\n\
         execute(terminal='t2', command='true', new_terminal=True)\n\
         read_file('a.py', end_line=5)\n")
    .await;
    let report = result.unwrap();
    assert_eq!(report.tool_calls, 4);
    let calls = host.calls();
    assert_eq!(
        calls,
        vec![
            (
                "execute".to_owned(),
                json!({"terminal": "main", "command": "ls", "timeout": 10, "new_terminal": false})
            ),
            (
                "execute".to_owned(),
                json!({"terminal": "main", "command": "pwd", "timeout": 30, "new_terminal": false})
            ),
            (
                "execute".to_owned(),
                json!({"terminal": "t2", "command": "true", "timeout": 10, "new_terminal": true})
            ),
            (
                "read_file".to_owned(),
                json!({"path": "a.py", "start_line": 1, "end_line": 5})
            ),
        ]
    );
}

#[tokio::test]
async fn star_args_and_star_kwargs_are_bound() {
    let (host, result) =
        run("args = ['main', 'ls']\nkw = {'timeout': 3}\nexecute(*args, **kw)\n").await;
    result.unwrap();
    assert_eq!(
        host.calls(),
        vec![(
            "execute".to_owned(),
            json!({"terminal": "main", "command": "ls", "timeout": 3, "new_terminal": false})
        )]
    );
}

#[tokio::test]
async fn keywords_no_parameter_names_go_to_the_star_star_parameter() {
    let (host, result) = run(
        "prompt('docs', 'review', language='rust', depth=2)\nprompt(server='docs', name='plain')\nkw = {'x': 1}\nprompt('d', 'n', **kw)\n",
    )
    .await;
    result.unwrap();
    assert_eq!(
        host.calls(),
        vec![
            (
                "prompt".to_owned(),
                json!({"server": "docs", "name": "review", "args": {"language": "rust", "depth": 2}})
            ),
            (
                "prompt".to_owned(),
                json!({"server": "docs", "name": "plain", "args": {}})
            ),
            (
                "prompt".to_owned(),
                json!({"server": "d", "name": "n", "args": {"x": 1}})
            ),
        ]
    );
    assert_eq!(
        type_error("prompt('d')").await,
        "prompt() missing 1 required positional argument: 'name'"
    );
    assert_eq!(
        ToolSpec::new("prompt", vec![ParamSpec::required("server")], "")
            .with_var_keyword("args")
            .signature(),
        "prompt(server, **args)"
    );
}

async fn type_error(code: &str) -> String {
    let (host, failure) = run_err(code).await;
    assert_eq!(failure.kind, FailureKind::Exception, "{failure:?}");
    assert_eq!(failure.exc_type, "TypeError");
    assert_eq!(failure.line, Some(1));
    assert!(
        host.calls().is_empty(),
        "no call may reach the host: {:?}",
        host.calls()
    );
    failure.message
}

#[tokio::test]
async fn unexpected_keyword_is_a_type_error_with_a_suggestion() {
    assert_eq!(
        type_error("execute('main', 'ls', timout=3)").await,
        "execute() got an unexpected keyword argument 'timout'. Did you mean 'timeout'?"
    );
    assert_eq!(
        type_error("execute('main', 'ls', colour='red')").await,
        "execute() got an unexpected keyword argument 'colour'"
    );
}

#[tokio::test]
async fn missing_required_arguments_are_type_errors() {
    assert_eq!(
        type_error("execute('main')").await,
        "execute() missing 1 required positional argument: 'command'"
    );
    assert_eq!(
        type_error("execute()").await,
        "execute() missing 2 required positional arguments: 'terminal' and 'command'"
    );
    assert_eq!(
        type_error("execute(timeout=1)").await,
        "execute() missing 2 required positional arguments: 'terminal' and 'command'"
    );
}

#[tokio::test]
async fn too_many_positional_arguments_is_a_type_error() {
    assert_eq!(
        type_error("execute('a', 'b', 1, False, 'extra')").await,
        "execute() takes from 2 to 4 positional arguments but 5 were given"
    );
    assert_eq!(
        type_error("boom('a', 'b')").await,
        "boom() takes 1 positional argument but 2 were given"
    );
    assert_eq!(
        type_error("hang(1)").await,
        "hang() takes 0 positional arguments but 1 was given"
    );
}

#[tokio::test]
async fn duplicate_argument_is_a_type_error() {
    assert_eq!(
        type_error("execute('main', 'ls', command='pwd')").await,
        "execute() got multiple values for argument 'command'"
    );
}

#[tokio::test]
async fn unconvertible_arguments_are_type_errors() {
    assert_eq!(
        type_error("echo({1: 'a'})").await,
        "echo() argument 'value': dict keys must be str, not int; tools accept str, int, float, \
         bool, None, list, tuple and dict with str keys"
    );
    assert_eq!(
        type_error("echo(b'raw')").await,
        "echo() argument 'value': unsupported type 'bytes'; tools accept str, int, float, bool, \
         None, list, tuple and dict with str keys"
    );
    assert_eq!(
        type_error("echo({1, 2})").await,
        "echo() argument 'value': unsupported type 'set'; tools accept str, int, float, bool, \
         None, list, tuple and dict with str keys"
    );
}

#[tokio::test]
async fn binding_errors_are_catchable() {
    let (host, result) = run(
        "try:\n    execute('main', 'ls', timout=3)\nexcept TypeError as e:\n    print('caught', e)\n",
    )
    .await;
    result.unwrap();
    insta::assert_snapshot!("binding_error_caught", host.printed());
}

#[test]
fn signature_renders_python_defaults() {
    let spec = ToolSpec::new(
        "write_file",
        vec![
            ParamSpec::required("path"),
            ParamSpec::optional("mode", json!("w")),
            ParamSpec::optional("start_line", json!(null)),
            ParamSpec::optional("flag", json!(true)),
            ParamSpec::optional("ratio", json!(0.5)),
            ParamSpec::optional("edits", json!([[1, 2]])),
            ParamSpec::optional("opts", json!({"k": "it's"})),
        ],
        "",
    );
    assert_eq!(
        spec.signature(),
        "write_file(path, mode='w', start_line=None, flag=True, ratio=0.5, edits=[[1, 2]], opts={'k': \"it's\"})"
    );
    let read = ToolSpec::new(
        "read_file",
        vec![
            ParamSpec::required("path"),
            ParamSpec::optional("start_line", json!(1)),
            ParamSpec::optional("end_line", json!(null)),
        ],
        "",
    );
    assert_eq!(
        read.signature(),
        "read_file(path, start_line=1, end_line=None)"
    );
}
