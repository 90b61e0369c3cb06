//! The moto helper: started on a port moto picks, with its bucket, and scriptable behind a client's back.

use codepilot_testkit::moto::MotoServer;

#[tokio::test]
async fn moto_starts_on_its_own_port_with_the_bucket() {
    let Some(moto) = MotoServer::start("codepilot-testkit").unwrap() else {
        return;
    };
    let other = MotoServer::start("codepilot-testkit").unwrap().unwrap();
    assert_ne!(moto.endpoint(), other.endpoint(), "two servers, two ports");
    assert!(moto.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(moto.url("p"), "s3://codepilot-testkit/p");
    moto.put_object("a/b.txt", b"hello").await.unwrap();
    moto.delete_object("a/b.txt").await.unwrap();
}
