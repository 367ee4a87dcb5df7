from pipeline.metrics.wer import word_edits
from pipeline.reports.align import Aligned, Tally, align


def test_alignment_marks_each_kind_and_agrees_with_the_scored_counts():
    ref, hyp = "the cat sat on the mat now", "the bat sat on mat now please"
    aligned = align(ref, hyp)
    ops = "".join(a.op for a in aligned)
    counts = word_edits(ref, hyp)
    assert ops.count("S") == counts.substitutions == 1
    assert ops.count("D") == counts.deletions == 1
    assert ops.count("I") == counts.insertions == 1
    assert Aligned("S", "cat", "bat") in aligned
    assert Aligned("I", "", "please") in aligned
    # Reading the alignment back gives both texts.
    assert " ".join(a.ref for a in aligned if a.op != "I") == ref
    assert " ".join(a.hyp for a in aligned if a.op != "D") == hyp


def test_empty_sides_are_all_insertions_or_all_deletions():
    assert [a.op for a in align("", "a b")] == ["I", "I"]
    assert [a.op for a in align("a b", "")] == ["D", "D"]


def test_tally_ranks_confusion_pairs_like_sclite():
    tally = Tally()
    for ref, hyp in [("a b c", "a x c"), ("b b", "x y"), ("c d", "c"), ("e", "e f f")]:
        tally.add(align(ref, hyp))
    top = tally.top(2)
    assert top["items"] == 4
    assert top["substitutions"] == [
        {"ref": "b", "hyp": "x", "count": 2},
        {"ref": "b", "hyp": "y", "count": 1},
    ]
    assert top["deletions"] == [{"ref": "d", "count": 1}]
    assert top["insertions"] == [{"hyp": "f", "count": 2}]
    assert top["totals"] == {"substitutions": 3, "deletions": 1, "insertions": 2}
