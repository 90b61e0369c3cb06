//! The supported Python subset with tool results: dicts, loops, try/except, f-strings, comprehensions.

use codepilot_script::FailureKind;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::run;
use super::run_err;
use super::run_ok;

#[tokio::test]
async fn dict_results_can_be_subscripted_and_tested() {
    let out = run_ok(
        "r = execute('main', 'pytest -q', timeout=30)\n\
         if r['exit_code'] == 0:\n    print('ok', r['output'])\nelse:\n    print('failed')\n\
         r2 = execute('main', 'make fail')\n\
         print(r2['exit_code'], r2.get('status'), 'terminal' in r2)\n",
    )
    .await;
    assert_eq!(out, "ok pytest -q\n1 completed True\n");
}

#[tokio::test]
async fn loops_conditionals_fstrings_and_comprehensions() {
    let out = run_ok(
        "files = ['a.py', 'b.py', 'c.txt']\n\
         py = [f for f in files if f.endswith('.py')]\n\
         sizes = {f: len(read_file(f)) for f in py}\n\
         total = 0\n\
         for name, size in sizes.items():\n    total += size\n\
         i = 0\n\
         while i < 3:\n    i += 1\n    if i == 2:\n        continue\n    print(f'i={i}')\n\
         print(f'{len(py)} files, {total} chars, first={py[0]!r}')\n",
    )
    .await;
    assert_eq!(out, "i=1\ni=3\n2 files, 32 chars, first='a.py'\n");
}

#[tokio::test]
async fn functions_classes_lambdas_and_json_module_work() {
    let out = run_ok(
        "import json\n\
         def lines(path):\n    return read_file(path).split(' ')\n\
         class Box:\n    def __init__(self, v):\n        self.v = v\n\
         b = Box(lines('x'))\n\
         print(sorted(b.v, key=lambda s: len(s)))\n\
         print(json.dumps({'a': [1, 2]}))\n",
    )
    .await;
    assert_eq!(out, "['x', 'of', 'contents']\n{\"a\": [1, 2]}\n");
}

#[tokio::test]
async fn json_values_round_trip_through_a_tool() {
    let out = run_ok(
        "v = echo({'s': 'x', 'i': 1, 'f': 1.5, 'b': True, 'n': None, 'l': [1, (2, 3)], 'big': 2**63})\n\
         print(v)\nprint(type(v['l'][1]).__name__)\n",
    )
    .await;
    assert_eq!(
        out,
        // serde_json's Map is sorted by key (its `preserve_order` feature is off in this workspace).
        "{'b': True, 'big': 9223372036854775808, 'f': 1.5, 'i': 1, 'l': [1, [2, 3]], 'n': None, 's': 'x'}\nlist\n"
    );
}

#[tokio::test]
async fn tool_raise_is_catchable_by_type() {
    let out = run_ok(
        "try:\n    read_file('missing')\nexcept FileNotFoundError as e:\n    print('not found:', e)\n\
         try:\n    boom('bad value')\nexcept ValueError as e:\n    print('value:', e)\n\
         print('after')\n",
    )
    .await;
    assert_eq!(
        out,
        "not found: no such file: 'missing'\nvalue: bad value\nafter\n"
    );
}

#[tokio::test]
async fn uncaught_tool_raise_fails_with_the_call_line() {
    let (host, failure) = run_err("x = 1\nread_file('missing')\nprint('never')\n").await;
    assert_eq!(failure.kind, FailureKind::Exception);
    assert_eq!(failure.exc_type, "FileNotFoundError");
    assert_eq!(failure.line, Some(2));
    assert_eq!(failure.line_text.as_deref(), Some("read_file('missing')"));
    assert_eq!(failure.tool_calls, 1);
    assert_eq!(host.printed(), "");
    insta::assert_snapshot!("uncaught_tool_raise", super::render(&failure));
}

#[tokio::test]
async fn work_dir_global_is_visible_and_globals_do_not_leak_between_runs() {
    assert_eq!(run_ok("print(WORK_DIR)").await, "/work/dir\n");
    run_ok("leak = 1").await;
    let (_, failure) = run_err("print(leak)").await;
    assert_eq!(failure.exc_type, "NameError");
}

#[tokio::test]
async fn exception_inside_a_function_reports_the_innermost_line() {
    let (_, failure) = run_err("def f(d):\n    return d['missing']\n\nf(echo({'a': 1}))\n").await;
    assert_eq!(failure.exc_type, "KeyError");
    assert_eq!(failure.line, Some(2));
    assert_eq!(
        failure.line_text.as_deref(),
        Some("    return d['missing']")
    );
    insta::assert_snapshot!("key_error_in_function", super::render(&failure));
}

#[tokio::test]
async fn syntax_error_reports_a_line_and_nothing_runs() {
    let (host, failure) = run_err("print('a')\nexecute('main', 'ls')\nif True\n    pass\n").await;
    assert_eq!(failure.kind, FailureKind::Syntax);
    assert!(failure.nothing_ran());
    assert_eq!(failure.exc_type, "SyntaxError");
    assert_eq!(failure.line, Some(3));
    assert_eq!(failure.line_text.as_deref(), Some("if True"));
    assert!(host.seen().is_empty());
    insta::assert_snapshot!("syntax_error", super::render(&failure));
}

#[tokio::test]
async fn report_counts_calls() {
    let (_, result) = run("for i in range(3):\n    echo(i)\n").await;
    let report = result.unwrap();
    assert_eq!(report.tool_calls, 3);
    let _ = json!(null);
}
