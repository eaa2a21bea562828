"""Parsing commands and the registry that declares them."""

from __future__ import annotations

import pytest

from bot.commands import CommandRegistry, CommandSyntaxError, parse, tokenize
from bot.domain.roles import ALL_ROLES, STAFF, Role
from bot.features import basics
from bot.features.registry import Features


def test_plain_text_is_not_a_command() -> None:
    assert parse("the lift is broken again") is None
    assert parse("!!! fire on floor 3") is None
    assert parse("! ping") is None
    assert parse("") is None


def test_verb_is_lowercased_and_arguments_split() -> None:
    cmd = parse("  !Case solve 12 done")
    assert cmd is not None
    assert (cmd.verb, cmd.args, cmd.raw_args) == ("case", ["solve", "12", "done"], "solve 12 done")


def test_fullwidth_prefix_and_ideographic_space_are_accepted() -> None:
    cmd = parse("！ping\u3000现在")
    assert cmd is not None
    assert cmd.verb == "ping" and cmd.args == ["现在"]


def test_quotes_of_every_kind_group_words_including_chinese() -> None:
    assert tokenize('"Hongqiao Xincheng" “南门 保安” 「三号楼」 x') == [
        "Hongqiao Xincheng",
        "南门 保安",
        "三号楼",
        "x",
    ]


def test_key_value_with_quoted_value_stays_one_token() -> None:
    assert tokenize('name="Wang Li" role=guards') == ["name=Wang Li", "role=guards"]


def test_apostrophe_inside_a_word_is_not_a_quote() -> None:
    assert tokenize("don't panic") == ["don't", "panic"]


def test_unclosed_quote_is_a_syntax_error_naming_the_verb() -> None:
    with pytest.raises(CommandSyntaxError) as err:
        parse('!enrol @a:b name="Wang')
    assert err.value.verb == "enrol" and err.value.quote == '"'


def test_custom_prefix() -> None:
    assert parse("!ping", prefix="?") is None
    cmd = parse("？ping", prefix="?")
    assert cmd is not None and cmd.verb == "ping"


def test_huge_message_is_parsed_in_bounded_time() -> None:
    cmd = parse("!help " + "x " * 40_000)
    assert cmd is not None and len(cmd.args) <= 2100


def registry() -> CommandRegistry:
    features = Features()
    basics.register(features)
    return features.commands


def test_help_lists_only_what_the_caller_may_run() -> None:
    reg = registry()
    anyone = {s.verb for s in reg.visible_to(frozenset({Role.ANYONE}))}
    resident = {s.verb for s in reg.visible_to(frozenset({Role.ANYONE, Role.RESIDENT}))}
    officer = {s.verb for s in reg.visible_to(frozenset({Role.ANYONE, Role.OFFICER}))}
    assert anyone == {"help"}
    assert "status" not in resident and {"ping", "help"} <= resident
    assert "status" in officer


def test_closest_match_only_suggests_allowed_commands() -> None:
    reg = registry()
    assert reg.closest("pnig", frozenset({Role.ANYONE, Role.RESIDENT})) == "ping"
    assert reg.closest("statsu", frozenset({Role.ANYONE})) is None
    assert reg.closest("statsu", STAFF) == "status"


def test_every_command_has_help_in_both_languages() -> None:
    for spec in registry().all():
        assert spec.help["en"].strip() and spec.help["zh"].strip(), spec.verb
        assert spec.roles <= ALL_ROLES


def test_declaring_a_verb_twice_is_refused() -> None:
    reg = registry()
    with pytest.raises(ValueError):
        reg.command("ping", roles=ALL_ROLES, help_en="x", help_zh="x")(basics.register)
