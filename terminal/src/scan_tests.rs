use super::*;
use pretty_assertions::assert_eq;

fn collect(chunks: &[&[u8]]) -> Vec<String> {
    let mut scanner = Scanner::default();
    let mut out = Vec::new();
    for chunk in chunks {
        scanner.feed(chunk, |seg| match seg {
            Seg::Data(d) => out.push(format!("data:{}", String::from_utf8_lossy(d))),
            Seg::Marker(m) => out.push(format!("mark:{}", String::from_utf8_lossy(m))),
        });
    }
    out
}

#[test]
fn whole_and_split_markers() {
    let whole = collect(&[b"ab\x1b]6973;D;n1;0;/tmp\x07cd"]);
    assert_eq!(whole, ["data:ab", "mark:D;n1;0;/tmp", "data:cd"]);
    let stream: &[u8] = b"ab\x1b]6973;D;n1;0;/tmp\x07cd";
    for split in 1..stream.len() {
        let parts = collect(&[&stream[..split], &stream[split..]]);
        let joined: Vec<String> = parts.into_iter().filter(|p| p != "data:").collect();
        let data: String = joined
            .iter()
            .filter_map(|p| p.strip_prefix("data:"))
            .collect();
        assert_eq!(data, "abcd", "split at {split}");
        assert!(
            joined.contains(&"mark:D;n1;0;/tmp".to_owned()),
            "split at {split}"
        );
    }
}

#[test]
fn other_escapes_pass_through() {
    assert_eq!(
        collect(&[b"\x1b[0m\x1b]0;t\x07x\x1b]6973;C\x1b\\y"]),
        ["data:\x1b[0m\x1b]0;t\x07x", "mark:C", "data:y"]
    );
}

#[test]
fn parse() {
    assert_eq!(
        parse_marker(b"D;abc;130;/a;b"),
        Some(Marker::CommandDone {
            nonce: "abc".into(),
            exit_code: 130,
            cwd: "/a;b".into()
        })
    );
    assert_eq!(parse_marker(b"C"), Some(Marker::CommandStart));
    assert_eq!(parse_marker(b"Z"), None);
}
