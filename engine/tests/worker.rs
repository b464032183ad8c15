//! The worker's side of the protocol, in process (`worker::serve` on one end of a socketpair):
//! `Count` is answered before a model is loaded (as a failure) and, with the real small
//! model, by the tokenizer, also in the middle of an answer.

mod common;

use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::small_model;
use tutord_engine::engine::{BackendKind, ChatMessage, LoadSpec, Placement, Sampling};
use tutord_protocol::{Event, Request, read_msg, write_msg};

/// The daemon's end of a worker served on a thread of this process.
fn served() -> UnixStream {
    let (ours, theirs) = UnixStream::pair().unwrap();
    std::thread::spawn(move || tutord_engine::worker::serve(theirs));
    ours.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    ours
}

#[test]
fn count_before_a_model_is_loaded_fails_with_a_reason() {
    let mut s = served();
    let count = Request::Count {
        id: 1,
        text: "hello".into(),
    };
    write_msg(&mut s, &count).unwrap();
    match read_msg::<Event>(&mut s).unwrap() {
        Event::CountFailed { id: 1, error } => assert!(error.contains("no model"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn count_is_answered_by_the_tokenizer_also_in_the_middle_of_an_answer() {
    let Some(model) = small_model("count_is_answered_by_the_tokenizer") else {
        return;
    };
    let mut s = served();
    let spec = LoadSpec {
        backend: BackendKind::Cpu,
        model_path: model,
        context_length: 2048,
        placement: Placement::default(),
        runtime_library: None,
    };
    write_msg(&mut s, &Request::Load(spec)).unwrap();
    assert!(matches!(
        read_msg::<Event>(&mut s).unwrap(),
        Event::Loaded { .. }
    ));
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(50);
    write_msg(
        &mut s,
        &Request::Count {
            id: 1,
            text: text.clone(),
        },
    )
    .unwrap();
    let idle = match read_msg::<Event>(&mut s).unwrap() {
        Event::Counted { id: 1, tokens } => tokens,
        other => panic!("{other:?}"),
    };
    // Ten tokens a sentence or so, never more than a token a byte.
    assert!(
        (400..=text.len() as u32).contains(&idle),
        "{idle} tokens for {} bytes",
        text.len()
    );
    // A long answer, and a count asked once it has started: the count comes before the end.
    let sampling = Sampling {
        temperature: 0.0,
        max_tokens: 200,
        ..Sampling::default()
    };
    let chat = vec![ChatMessage::new(
        "user",
        "Tell me a long story about a fox.",
    )];
    write_msg(
        &mut s,
        &Request::Generate {
            turn: 1,
            chat,
            sampling,
        },
    )
    .unwrap();
    assert!(matches!(
        read_msg::<Event>(&mut s).unwrap(),
        Event::Piece { turn: 1, .. }
    ));
    write_msg(&mut s, &Request::Count { id: 2, text }).unwrap();
    let mut pieces_after = 0;
    loop {
        match read_msg::<Event>(&mut s).unwrap() {
            Event::Piece { .. } => pieces_after += 1,
            Event::Counted { id: 2, tokens } => {
                assert_eq!(tokens, idle);
                break;
            }
            other => panic!("before the count: {other:?}"),
        }
    }
    let mut finished = false;
    while !finished {
        finished = matches!(read_msg::<Event>(&mut s).unwrap(), Event::Finished { .. });
    }
    eprintln!("counted mid-answer after {pieces_after} more pieces");
}
