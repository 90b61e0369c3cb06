//! One small project per language: exact definitions, references and call edges.

use codepilot_search::RefKind;
use codepilot_search::TraceDirection;
use pretty_assertions::assert_eq;

use super::built;
use super::defs;
use super::edges;
use super::write;

#[test]
fn every_grammar_loads_and_every_query_compiles() {
    codepilot_search::check_grammars().unwrap();
}

#[test]
fn python() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "app/auth.py",
                "MAX_TRIES = 3\n\nclass Login:\n    \"\"\"Checks a user's password.\"\"\"\n\n    def validate(self, user, password):\n        if not check_hash(password, user.hash):\n            raise ValueError(\"bad password\")\n        return audit(user)\n\n\ndef check_hash(password, stored):\n    return hash_of(password) == stored\n\n\ndef hash_of(text):\n    return text[::-1]\n",
            ),
            (
                "app/audit.py",
                "def audit(user):\n    print(user)\n    return True\n",
            ),
            (
                "main.py",
                "from app.auth import Login\n\nLogin().validate(None, 'x')\n\nchain = (Login()\n    .validate(None, 'y'))\n",
            ),
        ],
    );
    let index = built(dir.path(), None);
    assert_eq!(
        defs(&index, "validate"),
        ["app/auth.py:6 method Login.validate"]
    );
    assert_eq!(defs(&index, "Login"), ["app/auth.py:3 class Login"]);
    assert_eq!(
        defs(&index, "Login.validate"),
        ["app/auth.py:6 method Login.validate"]
    );
    assert_eq!(
        defs(&index, "MAX_TRIES"),
        ["app/auth.py:1 constant MAX_TRIES"]
    );
    assert_eq!(
        defs(&index, "login"),
        ["app/auth.py:3 class Login"],
        "case-insensitive when nothing matches exactly"
    );
    let sig = &index.definition("check_hash")[0];
    assert_eq!(
        (sig.signature.as_str(), sig.end_line),
        ("def check_hash(password, stored):", 13)
    );

    assert_eq!(
        edges(&index.trace("check_hash", TraceDirection::Callers, 2)),
        [
            "Login.validate → check_hash @app/auth.py:7 d1",
            "<module> → validate @main.py:3 d2",
            "chain → validate @main.py:6 d2",
        ]
    );
    assert_eq!(
        edges(&index.trace("validate", TraceDirection::Callees, 2)),
        [
            "Login.validate → check_hash @app/auth.py:7 d1",
            "Login.validate → ValueError @app/auth.py:8 d1",
            "Login.validate → audit @app/auth.py:9 d1",
            "check_hash → hash_of @app/auth.py:13 d2",
            "audit → print @app/audit.py:2 d2",
        ]
    );
    let refs: Vec<String> = index
        .references("Login")
        .iter()
        .map(|r| format!("{}:{} {:?} {}", r.file, r.line, r.kind, r.text))
        .collect();
    assert_eq!(
        refs,
        [
            "main.py:1 Reference from app.auth import Login",
            "main.py:3 Call Login().validate(None, 'x')",
            "main.py:5 Call chain = (Login()",
        ]
    );
    let r = &index.references("audit")[0];
    assert_eq!(
        (r.file.as_str(), r.line, r.kind, r.symbol.as_deref()),
        ("app/auth.py", 9, RefKind::Call, Some("Login.validate"))
    );

    let hits = index.search("validate the user password", 3, None);
    assert_eq!(
        hits[0].symbol.as_deref(),
        Some("Login.validate"),
        "{hits:#?}"
    );
    assert_eq!(
        (hits[0].file.as_str(), hits[0].start_line, hits[0].end_line),
        ("app/auth.py", 6, 9)
    );
    assert!(
        hits[0]
            .snippet
            .starts_with("    def validate(self, user, password):"),
        "{}",
        hits[0].snippet
    );
    let exact = index.search("hash_of", 1, None);
    assert_eq!(
        exact[0].symbol.as_deref(),
        Some("hash_of"),
        "a name puts its definition first"
    );
}

#[test]
fn javascript_and_typescript() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "web/cart.js",
                "export class Cart {\n  total(items) {\n    return sum(items.map(price));\n  }\n}\n\nfunction sum(xs) { return xs.reduce((a, b) => a + b, 0); }\nconst price = (item) => item.price;\n",
            ),
            (
                "web/api.ts",
                "export interface Order { id: string }\ntype Id = string;\nenum Status { Open, Closed }\n\nexport class Client {\n  fetchOrder(id: Id): Order {\n    return parse(load(id));\n  }\n}\n\nfunction parse(raw: string): Order { return JSON.parse(raw); }\nexport const load = (id: Id): string => `{\"id\":\"${id}\"}`;\n",
            ),
            (
                "web/view.tsx",
                "export function View() {\n  return <div>{new Cart().total([])}</div>;\n}\n",
            ),
        ],
    );
    let index = built(dir.path(), None);
    assert_eq!(defs(&index, "total"), ["web/cart.js:2 method Cart.total"]);
    assert_eq!(defs(&index, "sum"), ["web/cart.js:7 function sum"]);
    assert_eq!(defs(&index, "price"), ["web/cart.js:8 function price"]);
    assert_eq!(defs(&index, "Order"), ["web/api.ts:1 interface Order"]);
    assert_eq!(defs(&index, "Id"), ["web/api.ts:2 type Id"]);
    assert_eq!(defs(&index, "Status"), ["web/api.ts:3 enum Status"]);
    assert_eq!(
        defs(&index, "fetchOrder"),
        ["web/api.ts:6 method Client.fetchOrder"]
    );
    assert_eq!(defs(&index, "View"), ["web/view.tsx:1 function View"]);
    assert_eq!(
        edges(&index.trace("fetchOrder", TraceDirection::Callees, 1)),
        [
            "Client.fetchOrder → parse @web/api.ts:7 d1",
            "Client.fetchOrder → load @web/api.ts:7 d1"
        ]
    );
    assert_eq!(
        edges(&index.trace("Cart", TraceDirection::Callers, 1)),
        ["View → Cart @web/view.tsx:2 d1"]
    );
    assert_eq!(
        edges(&index.trace("total", TraceDirection::Callers, 1)),
        ["View → total @web/view.tsx:2 d1"]
    );
}

#[test]
fn rust() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "src/lib.rs",
            "pub struct Parser { depth: u32 }\n\npub trait Visit { fn visit(&self); }\n\nimpl Parser {\n    pub fn new() -> Self {\n        Self { depth: helper(1) }\n    }\n\n    fn run(&self) -> u32 {\n        let p = Parser::new();\n        println!(\"{}\", p.depth);\n        helper(self.depth)\n    }\n}\n\nimpl<T> Visit for Vec<T> { fn visit(&self) {} }\n\nfn helper(x: u32) -> u32 { x + 1 }\n\nmacro_rules! twice { ($e:expr) => { $e * 2 } }\nconst LIMIT: u32 = 10;\nenum Mode { Fast }\nmod inner { pub fn deep() {} }\n",
        )],
    );
    let index = built(dir.path(), None);
    assert_eq!(defs(&index, "Parser"), ["src/lib.rs:1 struct Parser"]);
    assert_eq!(defs(&index, "new"), ["src/lib.rs:6 method Parser.new"]);
    assert_eq!(defs(&index, "run"), ["src/lib.rs:10 method Parser.run"]);
    assert_eq!(defs(&index, "Visit"), ["src/lib.rs:3 trait Visit"]);
    assert_eq!(defs(&index, "helper"), ["src/lib.rs:19 function helper"]);
    assert_eq!(defs(&index, "twice"), ["src/lib.rs:21 macro twice"]);
    assert_eq!(defs(&index, "LIMIT"), ["src/lib.rs:22 constant LIMIT"]);
    assert_eq!(defs(&index, "Mode"), ["src/lib.rs:23 enum Mode"]);
    assert_eq!(defs(&index, "deep"), ["src/lib.rs:24 function inner.deep"]);
    assert_eq!(
        edges(&index.trace("run", TraceDirection::Callees, 1)),
        [
            "Parser.run → new @src/lib.rs:11 d1",
            "Parser.run → println @src/lib.rs:12 d1",
            "Parser.run → helper @src/lib.rs:13 d1",
        ]
    );
    assert_eq!(
        edges(&index.trace("helper", TraceDirection::Callers, 1)),
        [
            "Parser.new → helper @src/lib.rs:7 d1",
            "Parser.run → helper @src/lib.rs:13 d1"
        ]
    );
}

#[test]
fn go_and_java() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "store/store.go",
                "package store\n\ntype Store struct { items map[string]int }\n\ntype Getter interface { Get(k string) int }\n\ntype Key = string\n\nfunc (s *Store) Get(k string) int {\n\treturn lookup(s.items, k)\n}\n\nfunc lookup(m map[string]int, k string) int {\n\treturn m[k]\n}\n",
            ),
            (
                "src/App.java",
                "package app;\n\npublic class App {\n    private final Repo repo = new Repo();\n\n    public App() {}\n\n    public int count(String name) {\n        return repo.find(name).size();\n    }\n}\n\ninterface Repo { java.util.List<String> find(String name); }\n\nenum Level { LOW, HIGH }\n",
            ),
        ],
    );
    let index = built(dir.path(), None);
    assert_eq!(defs(&index, "Store"), ["store/store.go:3 struct Store"]);
    assert_eq!(
        defs(&index, "Getter"),
        ["store/store.go:5 interface Getter"]
    );
    assert_eq!(defs(&index, "Key"), ["store/store.go:7 type Key"]);
    assert_eq!(defs(&index, "Get"), ["store/store.go:9 method Store.Get"]);
    assert_eq!(
        defs(&index, "lookup"),
        ["store/store.go:13 function lookup"]
    );
    assert_eq!(
        edges(&index.trace("lookup", TraceDirection::Callers, 1)),
        ["Store.Get → lookup @store/store.go:10 d1"]
    );
    assert_eq!(
        defs(&index, "App"),
        ["src/App.java:3 class App", "src/App.java:6 method App.App"]
    );
    assert_eq!(defs(&index, "count"), ["src/App.java:8 method App.count"]);
    assert_eq!(defs(&index, "Repo"), ["src/App.java:13 interface Repo"]);
    assert_eq!(defs(&index, "Level"), ["src/App.java:15 enum Level"]);
    assert_eq!(
        edges(&index.trace("count", TraceDirection::Callees, 1)),
        [
            "App.count → find @src/App.java:9 d1",
            "App.count → size @src/App.java:9 d1"
        ]
    );
    assert_eq!(
        edges(&index.trace("Repo", TraceDirection::Callers, 1)),
        ["App → Repo @src/App.java:4 d1"]
    );
}

#[test]
fn c_and_cpp() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "lib/buf.h",
                "#define BUF_MAX 64\nstruct buf { int len; };\ntypedef struct buf buf_t;\nint buf_push(buf_t *b, int x);\n",
            ),
            (
                "lib/buf.c",
                "#include \"buf.h\"\n\nstatic int clamp(int x) { return x > BUF_MAX ? BUF_MAX : x; }\n\nint buf_push(buf_t *b, int x) {\n    b->len = clamp(b->len + x);\n    return b->len;\n}\n\nenum color { RED, GREEN };\n",
            ),
            (
                "src/shape.cpp",
                "namespace geo {\nclass Shape {\npublic:\n    double area() const { return scale(1.0); }\n    void draw();\n};\n}\n\nvoid geo::Shape::draw() {\n    area();\n}\n\ndouble scale(double x) { return x * 2; }\n",
            ),
        ],
    );
    let index = built(dir.path(), None);
    assert_eq!(defs(&index, "BUF_MAX"), ["lib/buf.h:1 macro BUF_MAX"]);
    assert_eq!(defs(&index, "buf"), ["lib/buf.h:2 struct buf"]);
    assert_eq!(defs(&index, "buf_t"), ["lib/buf.h:3 type buf_t"]);
    assert_eq!(
        defs(&index, "buf_push"),
        [
            "lib/buf.c:5 function buf_push",
            "lib/buf.h:4 declaration buf_push"
        ],
        "the body first, then the prototype"
    );
    assert_eq!(defs(&index, "color"), ["lib/buf.c:10 enum color"]);
    assert_eq!(
        edges(&index.trace("clamp", TraceDirection::Callers, 1)),
        ["buf_push → clamp @lib/buf.c:6 d1"]
    );
    assert_eq!(defs(&index, "Shape"), ["src/shape.cpp:2 class geo.Shape"]);
    assert_eq!(defs(&index, "area"), ["src/shape.cpp:4 method Shape.area"]);
    assert_eq!(
        defs(&index, "draw"),
        [
            "src/shape.cpp:9 method Shape.draw",
            "src/shape.cpp:5 declaration Shape.draw"
        ]
    );
    assert_eq!(defs(&index, "geo"), ["src/shape.cpp:1 namespace geo"]);
    assert_eq!(
        edges(&index.trace("draw", TraceDirection::Graph, 1)),
        ["Shape.draw → area @src/shape.cpp:10 d1"]
    );
    assert_eq!(
        edges(&index.trace("area", TraceDirection::Graph, 1)),
        [
            "Shape.draw → area @src/shape.cpp:10 d1",
            "Shape.area → scale @src/shape.cpp:4 d1"
        ]
    );
}

#[test]
fn the_repo_map_ranks_the_most_used_files_first_and_follows_the_focus() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "core/models.py",
                "class UserAccount:\n    def display_name(self):\n        return 'x'\n",
            ),
            (
                "views/a.py",
                "from core.models import UserAccount\n\ndef show_a():\n    return UserAccount().display_name()\n",
            ),
            (
                "views/b.py",
                "from core.models import UserAccount\n\ndef show_b():\n    return UserAccount()\n",
            ),
            ("tools/lonely.py", "def lonely_helper():\n    return 1\n"),
        ],
    );
    let index = built(dir.path(), None);
    let map = index.repo_map(1024, &[]);
    assert_eq!(map.files[0], "core/models.py", "{}", map.text);
    assert!(
        map.text.starts_with(
            "core/models.py:\n    1│  class UserAccount:\n    2│    def display_name(self):\n"
        ),
        "{}",
        map.text
    );
    assert_eq!(map.total_files, 4);
    let small = index.repo_map(16, &[]);
    assert_eq!(
        small.files,
        ["core/models.py"],
        "a small budget keeps the best: {}",
        small.text
    );
    let focused = index.repo_map(1024, &["tools/lonely.py".to_owned()]);
    assert_eq!(focused.files[0], "tools/lonely.py", "{}", focused.text);
}
