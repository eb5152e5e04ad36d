import itertools

from streamrag.ingest.chunker import Block, chunk_blocks, split_sentences

ZH = (
    "退货政策：自收到商品之日起七天内可以无理由退货。请保留发票和完整包装！"
    "退款会在三个工作日内原路返回。如有疑问，请拨打客服电话？客服时间为工作日九点到十八点；"
    "节假日暂停服务……"
)
EN = (
    "Returns are accepted within seven days. Keep the receipt and the original box! "
    "Refunds go back to the original payment method within three business days. "
    "Questions? Call support on weekdays from 9 to 18."
)


def sentences(text: str) -> list[str]:
    return [text[s:e].strip() for s, e in split_sentences(text)]


def test_chinese_sentence_ends() -> None:
    assert sentences(ZH) == [
        "退货政策：自收到商品之日起七天内可以无理由退货。",
        "请保留发票和完整包装！",
        "退款会在三个工作日内原路返回。",
        "如有疑问，请拨打客服电话？",
        "客服时间为工作日九点到十八点；",
        "节假日暂停服务……",
    ]


def test_closing_quotes_stay_with_their_sentence() -> None:
    assert sentences("他说：“好的。”然后走了。") == ["他说：“好的。”", "然后走了。"]
    assert sentences('She said "yes." Then she left.') == ['She said "yes."', "Then she left."]


def test_english_decimal_and_version_numbers_are_not_sentence_ends() -> None:
    assert sentences("Version 3.11 costs 2.5 dollars. Fine.") == [
        "Version 3.11 costs 2.5 dollars.",
        "Fine.",
    ]


def _assert_whole_sentences(chunks: list[str], text: str) -> None:
    whole = set(sentences(text))
    for chunk in chunks:
        for sentence in sentences(chunk):
            assert sentence in whole, f"cut sentence {sentence!r}"


def test_chunks_respect_size_and_never_cut_a_sentence() -> None:
    for text in (ZH, EN, ZH + EN, EN + "\n" + ZH):
        chunks = [c.text for c in chunk_blocks([Block(text)], size=80, overlap=0)]
        assert len(chunks) > 1
        assert all(len(c) <= 80 for c in chunks)
        _assert_whole_sentences(chunks, text)
        assert "".join(chunks).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
            "\n", ""
        )


def test_overlap_carries_the_last_sentences_forward() -> None:
    chunks = [c.text for c in chunk_blocks([Block(ZH)], size=60, overlap=30)]
    assert len(chunks) >= 3
    for previous, current in itertools.pairwise(chunks):
        prev_sentences = sentences(previous)
        carried = [
            "".join(prev_sentences[i:])
            for i in range(len(prev_sentences))
            if current.startswith("".join(prev_sentences[i:]))
        ]
        if len(prev_sentences[-1]) <= 30:
            assert carried and all(len(c) <= 30 for c in carried)
    assert all(len(c) <= 60 for c in chunks)


def test_a_sentence_longer_than_the_size_is_cut_at_clause_marks() -> None:
    long_sentence = "，".join(["这是一个很长的从句"] * 20) + "。"
    chunks = [c.text for c in chunk_blocks([Block(long_sentence + "短句。")], 50, 10)]
    assert all(len(c) <= 50 for c in chunks)
    assert all(c.endswith(("，", "。")) for c in chunks)
    assert chunks[-1] == "短句。"


def test_sections_keep_their_heading_path_and_pages() -> None:
    blocks = [
        Block("第一页的内容。", ("手册", "退货"), page=1),
        Block("第二页继续。", ("手册", "退货"), page=2),
        Block("Shipping takes two days.", ("手册", "Shipping"), page=2),
    ]
    chunks = chunk_blocks(blocks, size=100, overlap=0)
    assert [(c.text, c.headings, c.page_start, c.page_end) for c in chunks] == [
        ("第一页的内容。\n第二页继续。", ("手册", "退货"), 1, 2),
        ("Shipping takes two days.", ("手册", "Shipping"), 2, 2),
    ]


def test_empty_and_whitespace_blocks_give_no_chunks() -> None:
    assert chunk_blocks([Block(""), Block("  \n ")], 100, 10) == []
