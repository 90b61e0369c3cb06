use pretty_assertions::assert_eq;

use super::*;

fn effects(code: &str) -> Vec<(usize, Option<(String, usize)>)> {
    find_calls(code)
        .unwrap()
        .into_iter()
        .map(|c| match c.effect {
            CallEffect::Consumes { path, count, .. } => (c.line, Some((path, count))),
            CallEffect::Unresolved => (c.line, None),
        })
        .collect()
}

fn some(line: usize, p: &str, n: usize) -> (usize, Option<(String, usize)>) {
    (line, Some((p.to_string(), n)))
}

#[test]
fn literal_calls() {
    let code = "write_file('a.py')\nwrite_file(\"b.py\", mode='a')\nwrite_file(path=r'c\\d', mode=\"edit\", start_line=1, end_line=2)\n";
    assert_eq!(
        effects(code),
        vec![some(1, "a.py", 1), some(2, "b.py", 1), some(3, "c\\d", 1)]
    );
}

#[test]
fn multi_edit_counts_list_elements() {
    let code =
        "write_file('m.py', mode='multi_edit', edits=[(1, 2), (5, 6),\n    (9, 9),])\nx = 1\n";
    assert_eq!(effects(code), vec![some(1, "m.py", 3)]);
    assert_eq!(
        effects("write_file('m', 'multi_edit', None, None, None, [(1,2)])"),
        vec![some(1, "m", 1)]
    );
    assert_eq!(
        effects("write_file('m', mode='multi_edit', edits=e)"),
        vec![(1, None)]
    );
    assert_eq!(
        effects("write_file('m', mode='multi_edit', edits=[(a, a) for a in r])"),
        vec![(1, None)]
    );
    assert_eq!(
        effects("write_file('m', mode='multi_edit')"),
        vec![(1, None)]
    );
}

#[test]
fn strings_and_comments_are_skipped() {
    let code = "# write_file('no')\nprint(\"write_file('no')\")\ns = '''\nwrite_file('no')\n'''\nprint(f\"{x} write_file('no')\")\nwrite_file('yes')  # write_file('no')\n";
    assert_eq!(effects(code), vec![some(7, "yes", 1)]);
}

#[test]
fn unresolvable_contexts() {
    assert_eq!(
        effects("for p in ps:\n    write_file(p)\n"),
        vec![(2, None)]
    );
    assert_eq!(
        effects("for p in ps:\n    write_file('a')\nwrite_file('b')\n"),
        vec![(2, None), some(3, "b", 1)]
    );
    assert_eq!(effects("while x:\n    write_file('a')\n"), vec![(2, None)]);
    assert_eq!(effects("def f():\n    write_file('a')\n"), vec![(2, None)]);
    assert_eq!(
        effects("if x:\n    write_file('a')\nelse:\n    write_file('b')\n"),
        vec![(2, None), (4, None)]
    );
    assert_eq!(
        effects("try:\n    write_file('a')\nexcept E:\n    write_file('b')\n"),
        vec![some(2, "a", 1), (4, None)]
    );
    assert_eq!(
        effects("with x:\n    write_file('a')\n"),
        vec![some(2, "a", 1)]
    );
    assert_eq!(effects("[write_file(p) for p in ps]"), vec![(1, None)]);
    assert_eq!(effects("x and write_file('a')"), vec![(1, None)]);
    assert_eq!(effects("w = write_file\nw('a')"), vec![(1, None)]);
    assert_eq!(effects("write_file(f'{d}/a')"), vec![(1, None)]);
    assert_eq!(effects("write_file(WORK_DIR + '/a')"), vec![(1, None)]);
    assert_eq!(effects("write_file(*args)"), vec![(1, None)]);
    assert_eq!(effects("write_file('a', mode=m)"), vec![(1, None)]);
    assert_eq!(effects("obj.write_file('a')"), vec![]);
    assert_eq!(
        effects("async def f():\n    write_file('a')\nwrite_file('b')"),
        vec![(2, None), some(3, "b", 1)]
    );
}

#[test]
fn f_string_without_fields_is_literal() {
    assert_eq!(effects("write_file(f'a.py')"), vec![some(1, "a.py", 1)]);
}

#[test]
fn rejects_inline_content_and_bad_mode() {
    assert!(matches!(
        find_calls("for x in y:\n  write_file('a', content='x')"),
        Err(ParseError::InlineContent { call_line: 2, .. })
    ));
    assert!(matches!(
        find_calls("write_file('a', mode='wb')"),
        Err(ParseError::InvalidMode { .. })
    ));
}

#[test]
fn never_panics_on_garbage() {
    for code in [
        "write_file(",
        "write_file('",
        "write_file(\"\"\"",
        "write_file((((",
        ")))write_file",
        "'''",
        "\\",
        "write_file('a', mode='multi_edit', edits=[",
        "x = (\nwrite_file('a')",
    ] {
        let _ = find_calls(code);
    }
}
