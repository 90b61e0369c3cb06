//! Embeddings against the scripted endpoint: vectors for every chunk, fused into the ranking, only changed chunks
//! embedded again, and an endpoint that is down.

use std::time::Duration;

use codepilot_search::Embedder;
use codepilot_search::EmbeddingsConfig;
use codepilot_testkit::ScriptedServer;

use super::built;
use super::write;

fn embedder(server: &ScriptedServer) -> Embedder {
    Embedder::new(EmbeddingsConfig {
        base_url: format!("{}/v1", server.base_url()),
        model: "scripted-embed".to_owned(),
        api_key: Some("sk-embed-secret".to_owned()),
        batch_size: 2,
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

async fn embed_all(index: &codepilot_search::CodeIndex, embedder: &Embedder) -> usize {
    let pending = index.pending_embeddings(1000);
    for batch in pending.chunks(embedder.batch_size()) {
        let texts: Vec<String> = batch.iter().map(|(_, t)| t.clone()).collect();
        let vectors = embedder.embed(&texts).await.unwrap();
        index.add_vectors(batch.iter().map(|(h, _)| *h).zip(vectors));
    }
    pending.len()
}

#[tokio::test]
async fn vectors_join_the_ranking_and_only_changed_chunks_are_embedded_again() {
    let server = ScriptedServer::start(Vec::new()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        &[
            (
                "shop.py",
                "def checkout(cart):\n    return charge(cart)\n\ndef charge(cart):\n    return sum(cart)\n",
            ),
            ("docs.md", "# Payments\nHow a basket is paid for.\n"),
        ],
    );
    let index = built(root, Some(home.path()));
    let embedder = embedder(&server);
    index.load_vectors(embedder.model());
    let first = embed_all(&index, &embedder).await;
    assert_eq!(first, 3);
    assert_eq!(index.vector_coverage(), (3, 3));
    let requests: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/embeddings")
        .collect();
    assert_eq!(requests.len(), 2, "batches of two");
    assert_eq!(requests[0].body["model"], "scripted-embed");
    assert_eq!(
        requests[0].headers.get("authorization").map(String::as_str),
        Some("Bearer sk-embed-secret")
    );
    let inputs: Vec<&str> = requests
        .iter()
        .flat_map(|r| r.body["input"].as_array().unwrap())
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        inputs.contains(&"shop.py: checkout\ndef checkout(cart):\n    return charge(cart)"),
        "{inputs:?}"
    );

    // Words only the vectors connect: "basket paid" is in the docs; the fused ranking still has the code first
    // for a question in its words, and finds the docs for theirs.
    let query = codepilot_testkit::scripted_embedding("how a basket is paid for");
    let hits = index.search("how a basket is paid for", 3, Some(&query));
    assert_eq!(hits[0].file, "docs.md", "{hits:#?}");
    index.save_vectors().unwrap();

    // One function changes: one chunk is embedded again, after a restart too.
    std::fs::write(root.join("shop.py"), "def checkout(cart):\n    return charge(cart)\n\ndef charge(cart):\n    return sum(cart) + 1\n").unwrap();
    let index = built(root, Some(home.path()));
    index.load_vectors(embedder.model());
    assert_eq!(index.vector_coverage(), (2, 3));
    assert_eq!(embed_all(&index, &embedder).await, 1);

    // Another model's vectors are not used.
    index.save_vectors().unwrap();
    index.load_vectors("another-model");
    assert_eq!(index.vector_coverage(), (0, 3));
}

#[tokio::test]
async fn an_endpoint_that_is_down_is_an_error_that_names_it_not_the_key() {
    let server = ScriptedServer::start(Vec::new()).await.unwrap();
    server.set_embeddings_down(true);
    let err = embedder(&server)
        .embed(&["x".to_owned()])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/v1/embeddings answered 503"), "{err}");
    assert!(!err.contains("sk-embed-secret"), "{err}");
    let bad = Embedder::new(EmbeddingsConfig {
        base_url: "localhost:1".to_owned(),
        model: "m".to_owned(),
        api_key: None,
        batch_size: 1,
        timeout: Duration::from_secs(1),
    })
    .unwrap_err()
    .to_string();
    assert!(bad.contains("must start with http://"), "{bad}");
}
