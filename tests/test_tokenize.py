from streamrag.retrieve.tokenize import tokenize


def test_chinese_yields_characters_and_bigrams_without_function_words() -> None:
    assert tokenize("苏镜宇的原名叫什么？") == [
        *("苏", "镜", "宇", "原", "名", "叫", "什", "么"),
        *("苏镜", "镜宇", "宇的", "的原", "原名", "名叫", "叫什"),  # not "什么"
    ]


def test_english_is_lower_cased_stemmed_and_stopwords_dropped() -> None:
    assert tokenize("Who won the women's singles at Wimbledon?") == [
        "won",
        "women",
        "singl",
        "wimbledon",
    ]


def test_mixed_text_fullwidth_forms_and_numbers() -> None:
    assert tokenize("ＧＰＴ－３发布于２０２０年") == [
        "gpt-3",
        "2020",
        "发",
        "布",
        "发布",
        "布于",
        "年",
    ]


def test_a_phrase_is_matched_whatever_the_word_segmentation() -> None:
    passage = tokenize("退货政策：自收到商品之日起七天内可以无理由退货。")
    query = tokenize("七天内可以退货吗")
    assert {"七天", "天内", "可以", "退货"} <= set(query) & set(passage)


def test_a_query_keeps_its_rarest_terms_within_a_postings_budget() -> None:
    from streamrag.store import base

    frequency = {"rare": 3, "mid": 30_000, "also": 15_000, "common": 60_000}
    assert base.rarest_terms(frequency, frequency, 100_000) == ["rare", "also"]  # "mid": 45,003
    assert base.rarest_terms(["common"], frequency, 100_000) == ["common"]  # at least one
    assert base.rarest_terms(["common", "mid"], frequency, 100_000) == ["mid"]  # over half out
