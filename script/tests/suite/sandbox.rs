//! Only tools and safe builtins are callable; the block has no OS access of its own.

use codepilot_script::FailureKind;
use pretty_assertions::assert_eq;

use super::run_err;
use super::run_ok;

#[tokio::test]
async fn unknown_names_raise_name_error() {
    let (host, failure) = run_err("r = execute('main', 'ls')\nsubprocess_run('ls')\n").await;
    assert_eq!(failure.kind, FailureKind::Exception);
    assert_eq!(failure.exc_type, "NameError");
    assert_eq!(failure.message, "name 'subprocess_run' is not defined");
    assert_eq!(failure.line, Some(2));
    assert_eq!(host.calls().len(), 1);
}

#[tokio::test]
async fn name_error_is_catchable() {
    let out =
        run_ok("try:\n    nope()\nexcept NameError as e:\n    print(type(e).__name__)\n").await;
    assert_eq!(out, "NameError\n");
}

async fn permission_error(code: &str) -> String {
    let (_, failure) = run_err(code).await;
    assert_eq!(failure.kind, FailureKind::Exception, "{failure:?}");
    assert_eq!(failure.exc_type, "PermissionError", "{failure:?}");
    failure.message
}

#[tokio::test]
async fn open_raises_permission_error_naming_the_tools() {
    let message = permission_error("open('/etc/passwd').read()").await;
    assert_eq!(
        message,
        "open() is not allowed: the control block has no direct OS access (files, environment, \
         clock); use the tools instead: execute, read_file, echo, boom, nap, hang, prompt"
    );
}

#[tokio::test]
async fn os_functions_raise_permission_error() {
    let message = permission_error("import os\nos.getenv('HOME')").await;
    assert!(
        message.starts_with("os.getenv() is not allowed"),
        "{message}"
    );
    let message = permission_error("import os\nprint(os.environ)").await;
    assert!(
        message.starts_with("os.environ() is not allowed"),
        "{message}"
    );
    let message =
        permission_error("from pathlib import Path\nPath('/etc/passwd').read_text()").await;
    assert!(
        message.starts_with("Path.read_text() is not allowed"),
        "{message}"
    );
}

#[tokio::test]
async fn permission_error_is_catchable() {
    let out =
        run_ok("try:\n    open('x', 'w')\nexcept PermissionError:\n    print('denied')\n").await;
    assert_eq!(out, "denied\n");
}

#[tokio::test]
async fn io_modules_are_not_importable() {
    let (_, failure) = run_err("import subprocess\n").await;
    assert_eq!(failure.exc_type, "ModuleNotFoundError");
    assert!(
        failure.message.contains("no direct OS access"),
        "{}",
        failure.message
    );
    insta::assert_snapshot!("import_subprocess", super::render(&failure));
}

#[tokio::test]
async fn dunder_escapes_do_not_reach_anything() {
    let (_, failure) = run_err("().__class__.__bases__[0].__subclasses__()").await;
    assert_eq!(failure.kind, FailureKind::Exception);
}
