//! Tokenization, the vocabulary and reading text files.

use rnnlm::device::DeviceChoice;
use rnnlm::vocab::{read_lines, Level, Tokenizer, Vocab, VocabLimits, EOS_ID, UNK_ID};

fn words(s: &str) -> Vec<String> {
    s.split(' ').map(String::from).collect()
}

#[test]
fn word_tokenizer_options() {
    let mut t = Tokenizer::new(Level::Word);
    assert_eq!(t.tokenize("  The cat,  sat. "), words("The cat, sat."));
    t.split_punct = true;
    assert_eq!(t.tokenize("(The cat, sat.)"), words("( The cat , sat . )"));
    assert_eq!(
        t.tokenize("don't stop"),
        words("don't stop"),
        "inner apostrophes stay"
    );
    t.lowercase = true;
    assert_eq!(t.tokenize("The CAT."), words("the cat ."));
    t.drop_punct = true;
    assert_eq!(t.tokenize("The cat, -- sat."), words("the cat sat"));
}

#[test]
fn char_tokenizer_uses_unicode_scalars() {
    let t = Tokenizer::new(Level::Char);
    assert_eq!(t.tokenize("añb 日"), vec!["a", "ñ", "b", " ", "日"]);
    let tokens: Vec<String> = t.tokenize("añb");
    assert_eq!(t.detokenize(&tokens), "añb");
}

#[test]
fn a_character_model_of_the_recognizer_form_reads_the_recognizers_words() {
    let t = Tokenizer {
        level: Level::Char,
        ..Tokenizer::recognizer_form()
    };
    let text = "Well-known ,  he   said .";
    let chars: Vec<String> = "well known he said".chars().map(String::from).collect();
    assert_eq!(t.tokenize(text), chars);
    assert_eq!(t.detokenize(&t.tokenize(text)), "well known he said");
    // Without the word options, every character stays, spaces and marks included.
    let plain = Tokenizer {
        lowercase: true,
        ..Tokenizer::new(Level::Char)
    };
    assert_eq!(plain.tokenize(text).len(), text.chars().count());
    // Reversed, the characters of the whole sentence come backwards.
    let reversed = Tokenizer { reverse: true, ..t };
    let mut backwards = chars.clone();
    backwards.reverse();
    assert_eq!(reversed.tokenize(text), backwards);
}

#[test]
fn detokenize_is_readable() {
    let t = Tokenizer::new(Level::Word);
    let tokens = words("`` He said , `` it 's fine ( really ) . ''");
    assert_eq!(t.detokenize(&tokens), "``He said, ``it's fine (really).''");
    assert_eq!(
        t.detokenize(&words("John 's car is n't red .")),
        "John's car isn't red."
    );
}

fn corpus(lines: &[&str]) -> Vec<Vec<String>> {
    lines.iter().map(|l| words(l)).collect()
}

#[test]
fn min_count_and_max_size_cut_the_vocabulary() {
    let sentences = corpus(&["a a a a b b b c", "a b c c d"]);
    let v = Vocab::build(
        &sentences,
        VocabLimits {
            min_count: 2,
            max_size: None,
        },
    );
    assert_eq!(v.len(), 5, "<EOS> <UNK> a b c");
    assert_eq!(
        (v.token(0), v.token(1), v.token(2), v.token(3), v.token(4)),
        ("<EOS>", "<UNK>", "a", "b", "c")
    );
    assert_eq!(v.id("d"), UNK_ID, "seen once, below min-count");
    let v = Vocab::build(
        &sentences,
        VocabLimits {
            min_count: 1,
            max_size: Some(2),
        },
    );
    assert_eq!(v.len(), 4);
    assert_eq!(v.id("c"), UNK_ID, "cut by max-size");
}

#[test]
fn encode_appends_eos_and_counts_unknowns() {
    let v = Vocab::build(
        &corpus(&["x y x y"]),
        VocabLimits {
            min_count: 1,
            max_size: None,
        },
    );
    let (ids, unknown) = v.encode(&words("x z y q"));
    assert_eq!(ids, vec![v.id("x"), UNK_ID, v.id("y"), UNK_ID, EOS_ID]);
    assert_eq!(unknown, 2);
}

#[test]
fn vocabulary_save_load_identity() {
    let dir = tempfile::tempdir().unwrap();
    let sentences = corpus(&["the cat sat on the mat", "a dog , a \"cat\""]);
    let v = Vocab::build(
        &sentences,
        VocabLimits {
            min_count: 1,
            max_size: None,
        },
    );
    let path = dir.path().join("vocab.txt");
    v.save(&path).unwrap();
    assert_eq!(Vocab::load(&path).unwrap(), v);
    std::fs::write(&path, "hello\nworld\n").unwrap();
    let err = Vocab::load(&path).unwrap_err().to_string();
    assert!(err.contains("not a vocabulary"), "{err}");
}

#[test]
fn read_lines_skips_and_counts_empty_lines_and_names_bad_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.txt");
    std::fs::write(&path, "one\r\n\n  \ntwo\n").unwrap();
    let (lines, empty) = read_lines(&path).unwrap();
    assert_eq!(lines, vec!["one", "two"]);
    assert_eq!(empty, 2);
    std::fs::write(&path, b"fine\nbad \xff byte\n").unwrap();
    let err = read_lines(&path).unwrap_err().to_string();
    assert!(err.contains("train.txt:2: invalid UTF-8"), "{err}");
}

#[test]
fn device_parsing() {
    assert_eq!("auto".parse::<DeviceChoice>(), Ok(DeviceChoice::Auto));
    assert_eq!("cpu".parse::<DeviceChoice>(), Ok(DeviceChoice::Cpu));
    assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(0)));
    assert_eq!("cuda:3".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(3)));
    assert!("gpu".parse::<DeviceChoice>().is_err());
    assert!("cuda:x".parse::<DeviceChoice>().is_err());
    if !tch::Cuda::is_available() {
        let err = DeviceChoice::Cuda(0).resolve().unwrap_err().to_string();
        assert!(err.contains("no CUDA device"), "{err}");
    }
}

#[test]
fn the_recognizer_form_is_lowercase_words_without_punctuation_or_hyphens() {
    let t = Tokenizer::recognizer_form();
    assert_eq!(
        t.tokenize("The well-known X-ray , said `` Mr. O'Brien '' -- twice ."),
        words("the well known x ray said mr. o'brien twice")
    );
    assert_eq!(
        t.tokenize("Don't stop the boys' car ; 'em"),
        words("don't stop the boys' car 'em"),
        "apostrophes inside and at the ends of words stay"
    );
    assert_eq!(
        t.tokenize("self--made --- anti-"),
        words("self made anti"),
        "runs of hyphens split like one, and a lone one goes"
    );
    // A recognizer's hypothesis is already in this form: the tokenizer leaves it be.
    let hypothesis = "the president met with the press on monday";
    assert_eq!(t.tokenize(hypothesis), words(hypothesis));
}

#[test]
fn a_reversed_tokenizer_reverses_and_detokenizes_in_reading_order() {
    let t = Tokenizer {
        reverse: true,
        ..Tokenizer::recognizer_form()
    };
    let tokens = t.tokenize("The cat sat on the well-known mat .");
    assert_eq!(tokens, words("mat known well the on sat cat the"));
    assert_eq!(t.detokenize(&tokens), "the cat sat on the well known mat");
    assert_eq!(
        t.reading_order(&tokens),
        words("the cat sat on the well known mat")
    );
}

/// The shipped real N-best references are the Brown sentences their ids name, in the
/// decoder's form: the recognizer-form tokenizer reads both alike.
#[test]
fn real_references_are_their_brown_sentences_in_the_recognizer_form() {
    let t = Tokenizer::recognizer_form();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets");
    for (refs, brown) in [("real-dev", "valid"), ("real-test", "test")] {
        let lines = std::fs::read_to_string(root.join(format!("brown/{brown}.txt"))).unwrap();
        let lines: Vec<&str> = lines.split('\n').collect();
        let path = root.join(format!("asr/{refs}.refs.csv"));
        let mut reader = csv::Reader::from_path(&path).unwrap();
        let mut count = 0;
        for record in reader.records() {
            let record = record.unwrap();
            let (id, reference) = (&record[0], &record[1]);
            let (split, number) = id.split_once('-').unwrap();
            assert_eq!(split, brown, "{id}");
            let line = lines[number.parse::<usize>().unwrap() - 1];
            assert_eq!(t.tokenize(reference), t.tokenize(line), "{id}: {line}");
            assert_eq!(reference, reference.to_lowercase(), "{id}");
            assert!(
                reference
                    .split(' ')
                    .all(|w| w.chars().any(char::is_alphabetic)),
                "{id}: {reference}"
            );
            count += 1;
        }
        assert_eq!(count, 500, "{}", path.display());
    }
}

/// A character model sees every character, "\r", tabs and spaces included; each must
/// come back from `vocab.txt` as the token it was.
#[test]
fn a_character_vocabulary_survives_save_and_load_whitespace_included() {
    let tokenizer = Tokenizer::new(Level::Char);
    let sentences = vec![tokenizer.tokenize("a\rb\tc d"), tokenizer.tokenize("\r\r ")];
    let vocab = Vocab::build(
        &sentences,
        VocabLimits {
            min_count: 1,
            max_size: None,
        },
    );
    assert!(vocab.len() >= 8, "{}", vocab.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vocab.txt");
    vocab.save(&path).unwrap();
    let loaded = Vocab::load(&path).unwrap();
    assert_eq!(loaded.len(), vocab.len());
    for id in 0..vocab.len() as i64 {
        assert_eq!(loaded.token(id), vocab.token(id), "token {id}");
    }
    assert_ne!(loaded.id("\r"), UNK_ID);
}
