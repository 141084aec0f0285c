"""The condition language of `storyloom curate`: one canonical spelling per condition, and a clear
reason for every condition that cannot be read (it is parsed, never evaluated as Python)."""

from __future__ import annotations

import pytest

from pipeline.dataset.conditions import CurationError, parse_condition


@pytest.mark.parametrize("text, canonical", [
    ("language in [en,de]", "language in [en, de]"),
    ("licence not in ['CC-BY-NC', \"CC BY NC\"]", 'license not in [CC-BY-NC, "CC BY NC"]'),
    ("  clip>=0.25 ", "score_clip >= 0.25"),
    ("words = 3", "words == 3"),
    ("score_align is not null", "score_align is not null"),
    ("flags has no_speech", "flags has no_speech"),
    ("kind != video", "source_kind != video"),
    ("frames >= 3.0", "frames >= 3"),
])
def test_conditions_are_parsed_to_one_spelling(text, canonical):
    assert parse_condition(text).text == canonical


@pytest.mark.parametrize("text, message", [
    ("", "it is empty"),
    ("colour == red", "unknown field 'colour'"),
    ("language", "expected an operator"),
    ("language ~ en", "expected an operator"),
    ("language ! en", "cannot read '! en'"),
    ("language < en", "language takes ==, !=, in, not in, is null, is not null"),
    ("score_clip >= high", "'high' is not a number"),
    ("score_clip >= nan", "'nan' is not a number"),
    ("score_clip >= \"0.2\"", "is not a number"),
    ("score_clip >== 0.2", "unexpected '='"),
    ("language in en", "take a list"),
    ("language in [en de]", "separated by commas"),
    ("language in [en,]", "ends with a comma"),
    ("flags == no_speech", "flags takes has, lacks"),
    ("language == null", "is null"),
    ("words >= 3 4", "expected one value"),
    ("__import__('os') == 1", "unknown field"),
])
def test_a_bad_condition_is_refused_with_the_reason(text, message):
    with pytest.raises(CurationError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_condition(text)
