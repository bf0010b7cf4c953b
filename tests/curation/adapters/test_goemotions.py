"""GoEmotions adapter, on the bundled slices (verbatim heads of the real TSVs)
and on small files built in tmp_path from real rows."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

import pytest

from curation.adapters.base import Rejected, collect, get_adapter
from curation.adapters.goemotions import RATER_META_COLUMNS, GoEmotionsAdapter, comment_split
from curation.errors import InputError
from curation.vocabularies import load

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data" / "goemotions"
EMOTIONS = load("emotion").labels

# The header and first three data rows of the real goemotions_1.csv (google-research
# commit 46034213, read through the search index), verbatim. The second is a rater who
# marked the example very unclear; none of the three comments is in the bundled TSV slices.
REAL_RATER_CSV_HEAD = (
    "text,id,author,subreddit,link_id,parent_id,created_utc,rater_id,example_very_unclear," + ",".join(EMOTIONS) + "\n"
    "That game hurt.,eew5j0j,Brdd9,nrl,t3_ajis4z,t1_eew18eq,1548381039.0,1,False,"
    "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,0,0\n"
    '" >sexuality shouldn’t be a grouping category It makes you different from othet ppl so imo it fits the '
    'definition of ""grouping"" ",eemcysk,TheGreen888,unpopularopinion,t3_ai4q37,t3_ai4q37,1548084169.0,37,True,'
    "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n"
    "\"You do right, if you don't care then fuck 'em!\",ed2mah1,Labalool,confessions,t3_abru74,t1_ed2m7g7,"
    "1546427744.0,37,False,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1\n"
)

# A real DailyDialog line (ijcnlp_dailydialog/dialogues_text.txt, line 1).
DAILYDIALOG_LINE = "The kitchen stinks . __eou__ I'll throw out the garbage . __eou__\n"


def read_all(*paths: Path) -> tuple[list[dict], list[Rejected], GoEmotionsAdapter]:
    adapter = GoEmotionsAdapter()
    records, rejected = collect(adapter, paths)
    return records, rejected, adapter


def tsv_lines(name: str) -> list[str]:
    return (EXAMPLES / name).read_text(encoding="utf-8").splitlines()


# ------------------------------------------------------------ simplified TSV


def test_registered_by_name() -> None:
    assert isinstance(get_adapter("goemotions"), GoEmotionsAdapter)


def test_example_slices_counts_and_labels() -> None:
    records, rejected, adapter = read_all(EXAMPLES)
    assert rejected == []
    by_split = Counter(r["split"] for r in records)
    assert by_split == {"train": 300, "validation": 100, "test": 100}
    multi = Counter(r["split"] for r in records if len(r["labels"]) > 1)
    assert multi == {"train": 52, "validation": 20, "test": 22}
    neutral = Counter(r["split"] for r in records for lab in r["labels"] if lab["value"] == "neutral")
    assert neutral == {"train": 114, "validation": 32, "test": 36}
    assert sum(len(r["labels"]) for r in records) == 357 + 124 + 122
    assert adapter.stats["quoted_rows"] == 8 + 1 + 4
    assert adapter.stats["rows"] == 500
    for r in records:
        assert len(r["turns"]) == 1 and r["turns"][0]["speaker"] == "author"
        assert all(lab["source"] == "gold" and lab["agent"] == "goemotions" for lab in r["labels"])


def test_multi_label_row_keeps_every_id_and_its_raw_form() -> None:
    records, _, _ = read_all(EXAMPLES / "train.tsv")
    row = next(r for r in records if r["id"] == "goemotions:train:eczjljm")  # line 125: ids "2,3", quoted
    assert [(lab["value"], lab["raw"]) for lab in row["labels"]] == [("anger", "2"), ("annoyance", "3")]
    assert row["provenance"]["line"] == 125
    assert row["turns"][0]["text"].startswith("[NAME] dude I see [NAME] so rarely")
    assert 'the OG "Fuck this character fuck this stupid game" king. ' in row["turns"][0]["text"]


def test_quoted_rows_unquote_exactly_like_the_csv_module_and_pandas() -> None:
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        records, _, _ = read_all(EXAMPLES / name)
        with (EXAMPLES / name).open(encoding="utf-8", newline="") as f:
            expected = [row[0] for row in csv.reader(f, delimiter="\t")]
        assert [r["turns"][0]["text"] for r in records] == expected
        quoted = [r for r, line in zip(records, tsv_lines(name), strict=True) if line.startswith('"')]
        assert quoted  # each slice holds some of the quoted rows
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(EXAMPLES / "test.tsv", sep="\t", header=None, dtype=str, keep_default_na=False)
    records, _, _ = read_all(EXAMPLES / "test.tsv")
    assert [r["turns"][0]["text"] for r in records] == list(frame[0])
    assert records[35]["turns"][0]["text"] == '"We need more content." "OK. here\'s some ballerina shoes."'


def test_ids_unique_deterministic_and_provenance() -> None:
    first, _, _ = read_all(EXAMPLES)
    second, _, _ = read_all(EXAMPLES)
    assert first == second
    ids = [r["id"] for r in first]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "goemotions:train:eebbqej"
    assert first[0]["provenance"]["file"] == "goemotions/train.tsv"
    assert first[0]["provenance"]["line"] == 1
    assert first[0]["provenance"]["adapter_version"] == "1"
    dev = next(r for r in first if r["split"] == "validation")
    assert dev["provenance"]["file"] == "goemotions/dev.tsv"


def test_a_file_given_directly_takes_its_split_from_the_name(tmp_path: Path) -> None:
    records, _, _ = read_all(EXAMPLES / "dev.tsv")
    assert {r["split"] for r in records} == {"validation"}
    assert records[0]["provenance"]["file"] == "dev.tsv"
    head = tmp_path / "test_head.tsv"
    head.write_text("\n".join(tsv_lines("test.tsv")[:5]) + "\n", encoding="utf-8")
    records, _, _ = read_all(head)
    assert [r["split"] for r in records] == ["test"] * 5


# ------------------------------------------------------------- bad inputs


def write_tsv(path: Path, lines: list[str]) -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return path


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ("Some text\t3\tabc123\textra", "expected 3 tab-separated fields"),
        ("Some text\t3", "expected 3 tab-separated fields"),
        ("Some text\t0,28\tabc123", "emotion id '28' out of range (expected integers 0..27)"),
        ("Some text\t-1\tabc123", "out of range"),
        ("Some text\t\tabc123", "empty emotion id list"),
        ('"unclosed quote\t3\tabc123', "unterminated quoted field"),
        ("Some text\t3\tabc 123", "bad comment id"),
        ("Some text\t3\teebbqej", "already on line 1"),
    ],
)
def test_bad_rows_are_rejected_with_file_and_line(tmp_path: Path, bad_line: str, expected: str) -> None:
    real = tsv_lines("train.tsv")[:4]
    path = write_tsv(tmp_path / "train.tsv", [*real[:2], bad_line, *real[2:]])
    records, rejected, _ = read_all(path)
    assert len(records) == 4
    assert len(rejected) == 1
    err = rejected[0]
    assert (err.file, err.line) == ("train.tsv", 3)
    assert expected in err.reason
    assert "train.tsv, line 3" in str(err.error())


def test_non_utf8_line_is_rejected_and_the_rest_read(tmp_path: Path) -> None:
    real = [line.encode("utf-8") for line in tsv_lines("train.tsv")[:3]]
    path = tmp_path / "train.tsv"
    path.write_bytes(b"\n".join([real[0], b"caf\xe9 au lait\t27\tzzz1", real[1], real[2]]) + b"\n")
    records, rejected, _ = read_all(path)
    assert len(records) == 3
    assert (rejected[0].file, rejected[0].line) == ("train.tsv", 2)
    assert "invalid UTF-8" in rejected[0].reason


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_bytes(b"")
    with pytest.raises(InputError, match=r"train\.tsv: file is empty"):
        read_all(tmp_path / "train.tsv")


def test_nonexistent_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.tsv: path does not exist"):
        read_all(tmp_path / "nope.tsv")


def test_dailydialog_text_is_refused(tmp_path: Path) -> None:
    dialogues = tmp_path / "dialogues_text.txt"
    dialogues.write_text(DAILYDIALOG_LINE, encoding="utf-8")
    with pytest.raises(InputError, match=r"dialogues_text\.txt: not a GoEmotions file"):
        read_all(dialogues)
    renamed = tmp_path / "train.tsv"
    renamed.write_text(DAILYDIALOG_LINE, encoding="utf-8")
    with pytest.raises(InputError, match=r"train\.tsv, line 1: not a GoEmotions TSV: expected 3 tab-separated"):
        list(GoEmotionsAdapter().read([renamed]))


def test_directory_without_goemotions_files(tmp_path: Path) -> None:
    (tmp_path / "dialogues_text.txt").write_text(DAILYDIALOG_LINE, encoding="utf-8")
    with pytest.raises(InputError, match="no GoEmotions files in this directory"):
        read_all(tmp_path)


def test_emotions_txt_must_match_the_canonical_vocabulary(tmp_path: Path) -> None:
    names = (EXAMPLES / "emotions.txt").read_text(encoding="utf-8").split("\n")
    assert names == list(EMOTIONS)  # the released file: 28 names, no trailing newline
    write_tsv(tmp_path / "train.tsv", tsv_lines("train.tsv")[:2])
    swapped = [names[1], names[0], *names[2:]]
    (tmp_path / "emotions.txt").write_text("\n".join(swapped), encoding="utf-8")
    with pytest.raises(InputError, match=r"emotions\.txt, line 1: expected emotion 'admiration'"):
        read_all(tmp_path)
    (tmp_path / "emotions.txt").write_text("\n".join([*names, "boredom"]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"emotions\.txt, line 29: expected 28 emotion names, got 29"):
        read_all(tmp_path)
    (tmp_path / "emotions.txt").write_text("\n".join(names) + "\n", encoding="utf-8")  # trailing newline is fine
    records, _, _ = read_all(tmp_path)
    assert len(records) == 2


# -------------------------------------------------------------- rater CSVs
#
# The rater-level files (full_dataset/goemotions_{1,2,3}.csv) are on Google Cloud
# Storage only and not available here, so the tests build them in their exact format
# from real TSV rows: the real header, text and comment id from the TSV, three raters
# per comment (two choose the gold emotions, the third disagrees), and one extra rater
# who marks the example very unclear. author / subreddit / link_id / parent_id /
# created_utc values are INVENTED (plausible shapes only). Rows are shuffled and spread
# over two files, so one comment's rows are not contiguous; they are written with the
# csv module the way pandas.DataFrame.to_csv writes (minimal quoting, "\n" line ends,
# created_utc as a float, True/False).

SUBREDDITS = ("AskReddit", "nba", "relationships", "gaming", "CasualUK")


def rater_rows_for(tsv_name: str, count: int, rng: random.Random) -> list[list[str]]:
    rows = []
    with (EXAMPLES / tsv_name).open(encoding="utf-8", newline="") as f:
        for n, (text, ids, comment_id) in enumerate(csv.reader(f, delimiter="\t")):
            if n == count:
                break
            gold = [int(i) for i in ids.split(",")]
            meta = [
                text,
                comment_id,
                f"user_{rng.randrange(10**6)}",
                rng.choice(SUBREDDITS),
                f"t3_a{rng.randrange(36**5):x}",
                f"t1_e{rng.randrange(36**5):x}",
                f"{1546300800 + rng.randrange(3 * 10**6)}.0",
            ]
            disagreeing = [(gold[0] + 1) % 28]
            for rater, chosen, unclear in ((1, gold, False), (2, gold, False), (3, disagreeing, False)):
                rows.append([*meta, str(rater), str(unclear), *("1" if i in chosen else "0" for i in range(28))])
            if n % 10 == 0:
                rows.append([*meta, "4", "True", *("0" for _ in range(28))])
    return rows


def write_rater_csvs(folder: Path, rows: list[list[str]], n_files: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n_files):
        path = folder / f"goemotions_{k + 1}.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow([*RATER_META_COLUMNS, *EMOTIONS])
            writer.writerows(rows[k::n_files])
        paths.append(path)
    return paths


@pytest.fixture
def rated_dir(tmp_path: Path) -> Path:
    """A GoEmotions folder: the example TSVs plus rater CSVs for 40 train and 10 dev comments."""
    root = tmp_path / "goemotions"
    root.mkdir()
    for name in ("train.tsv", "dev.tsv", "test.tsv", "emotions.txt"):
        (root / name).write_bytes((EXAMPLES / name).read_bytes())
    rng = random.Random(7)
    rows = rater_rows_for("train.tsv", 40, rng) + rater_rows_for("dev.tsv", 10, rng)
    rng.shuffle(rows)
    write_rater_csvs(root / "full_dataset", rows)
    return root


def test_rater_rows_become_human_labels_on_the_tsv_record(rated_dir: Path) -> None:
    records, rejected, adapter = read_all(rated_dir)
    assert rejected == []
    assert len(records) == 500  # every rated comment is in a TSV: nothing extra
    assert adapter.stats["rater_rows"] == 3 * 50 + 5
    assert adapter.stats["rated_comments_joined"] == 50
    first = records[0]  # train line 1, eebbqej: gold neutral
    assert first["id"] == "goemotions:train:eebbqej" and first["split"] == "train"
    gold = [lab["value"] for lab in first["labels"] if lab["source"] == "gold"]
    human = [(lab["agent"], lab["value"]) for lab in first["labels"] if lab["source"] == "human"]
    assert gold == ["neutral"]
    assert sorted(human) == [
        ("goemotions:rater:1", "neutral"),
        ("goemotions:rater:2", "neutral"),
        ("goemotions:rater:3", "admiration"),
    ]
    assert sorted(first["context"]["raters"].split(",")) == ["1", "2", "3", "4"]
    assert first["context"]["raters_unclear"] == "4"
    assert first["context"]["subreddit"] in SUBREDDITS
    assert first["context"]["created_utc"].endswith(".0")
    assert first["provenance"]["file"] == "goemotions/train.tsv"
    dev = next(r for r in records if r["id"] == "goemotions:validation:edgurhb")  # dev line 1
    assert {lab["source"] for lab in dev["labels"]} == {"gold", "human"}
    unrated = next(r for r in records if r["id"].startswith("goemotions:test:"))
    assert unrated["context"] == {} and {lab["source"] for lab in unrated["labels"]} == {"gold"}


def test_multi_label_ratings_keep_each_emotion(rated_dir: Path) -> None:
    records, _, _ = read_all(rated_dir)
    multi = next(r for r in records[:40] if sum(lab["source"] == "gold" for lab in r["labels"]) > 1)
    gold = {lab["value"] for lab in multi["labels"] if lab["source"] == "gold"}
    rater1 = {lab["value"] for lab in multi["labels"] if lab["agent"] == "goemotions:rater:1"}
    assert rater1 == gold and len(rater1) > 1


def test_comments_only_in_the_csvs_get_a_comment_split(tmp_path: Path) -> None:
    path = tmp_path / "goemotions_1.csv"
    path.write_text(REAL_RATER_CSV_HEAD, encoding="utf-8")
    records, rejected, adapter = read_all(path)
    assert rejected == []
    assert [r["id"].split(":", 2)[2] for r in records] == ["eew5j0j", "eemcysk", "ed2mah1"]
    for r in records:
        assert r["split"] == comment_split(r["id"].split(":")[2])
        assert r["id"] == f"goemotions:{r['split']}:{r['id'].split(':')[2]}"
        assert r["context"]["split_assigned"] == "hash"
        assert r["provenance"]["file"] == "goemotions_1.csv"
    hurt, unclear, right = records
    assert hurt["turns"][0]["text"] == "That game hurt."
    assert [(lab["value"], lab["source"], lab["agent"]) for lab in hurt["labels"]] == [
        ("sadness", "human", "goemotions:rater:1")
    ]
    assert hurt["context"]["subreddit"] == "nrl" and hurt["context"]["created_utc"] == "1548381039.0"
    assert unclear["labels"] == [] and unclear["context"]["raters_unclear"] == "37"
    assert unclear["turns"][0]["text"].endswith('fits the definition of "grouping" ')
    assert [lab["value"] for lab in right["labels"]] == ["neutral"]
    assert [r["provenance"]["line"] for r in records] == [2, 3, 4]
    assert adapter.stats["rater_only_comments"] == 3


def test_rater_csv_joins_tsv_rows_given_as_files(tmp_path: Path) -> None:
    train = write_tsv(tmp_path / "train.tsv", [*tsv_lines("train.tsv")[:3], "That game hurt.\t25\teew5j0j"])
    csv_path = tmp_path / "goemotions_1.csv"
    csv_path.write_text(REAL_RATER_CSV_HEAD, encoding="utf-8")
    records, _, _ = read_all(train, csv_path)
    assert len(records) == 6
    hurt = records[3]
    assert hurt["id"] == "goemotions:train:eew5j0j" and "split_assigned" not in hurt["context"]
    assert [(lab["value"], lab["source"]) for lab in hurt["labels"]] == [("sadness", "gold"), ("sadness", "human")]
    assert [r["context"]["split_assigned"] for r in records[4:]] == ["hash", "hash"]


def test_bad_rater_rows_are_rejected_at_their_physical_start_line(tmp_path: Path) -> None:
    header, *rows = REAL_RATER_CSV_HEAD.splitlines()
    multi_line = rows[0].replace("That game hurt.", '"That game\nhurt."')  # a quoted field over two lines
    two = rows[2].replace(",False,", ",False,2,", 1).rsplit(",", 1)[0]  # a 2 where 0/1 is expected
    short = rows[0].rsplit(",", 3)[0]  # three fields short
    maybe = rows[2].replace(",False,", ",maybe,", 1)
    path = tmp_path / "goemotions_2.csv"
    path.write_text("\n".join([header, multi_line, two, short, maybe, rows[2]]) + "\n", encoding="utf-8")
    records, rejected, _ = read_all(path)
    assert [(e.line, e.file) for e in rejected] == [
        (4, "goemotions_2.csv"),
        (5, "goemotions_2.csv"),
        (6, "goemotions_2.csv"),
    ]
    assert "column 'admiration' is '2' (expected 0 or 1)" in rejected[0].reason
    assert "expected 37 comma-separated fields" in rejected[1].reason and "got 34" in rejected[1].reason
    assert "example_very_unclear is 'maybe' (expected True or False)" in rejected[2].reason
    assert records[0]["turns"][0]["text"] == "That game\nhurt."
    assert records[0]["provenance"]["line"] == 2


def test_rater_csv_with_a_wrong_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "goemotions_1.csv"
    path.write_text("text,id,label\nhi,abc,1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"goemotions_1\.csv, line 1: not a GoEmotions rater CSV"):
        read_all(path)


def test_non_utf8_rater_row(tmp_path: Path) -> None:
    header, *rows = REAL_RATER_CSV_HEAD.splitlines()
    data = "\n".join([header, rows[0]]).encode("utf-8") + b"\n" + rows[2].encode("utf-8").replace(b"fuck", b"f\xfcck")
    path = tmp_path / "goemotions_3.csv"
    path.write_bytes(data + b"\n")
    records, rejected, _ = read_all(path)
    assert len(records) == 1
    assert (rejected[0].file, rejected[0].line) == ("goemotions_3.csv", 3)
    assert "invalid UTF-8" in rejected[0].reason


def test_comment_split_is_deterministic_and_about_80_10_10() -> None:
    ids = [line.rsplit("\t", 1)[1] for name in ("train.tsv", "dev.tsv", "test.tsv") for line in tsv_lines(name)]
    splits = Counter(comment_split(i) for i in ids)
    assert [comment_split(i) for i in ids] == [comment_split(i) for i in ids]
    assert 360 <= splits["train"] <= 440 and 25 <= splits["validation"] <= 75 and 25 <= splits["test"] <= 75
