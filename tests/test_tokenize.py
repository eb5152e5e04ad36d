from streamrag.retrieve.tokenize import tokenize


def test_chinese_words_are_segmented_with_their_characters_and_function_words_dropped() -> None:
    assert tokenize("苏镜宇的原名叫什么？") == [
        "苏镜宇",
        "苏",
        "镜",
        "宇",
        "原名",
        "原",
        "名",
        "叫",
    ]


def test_english_is_lower_cased_stemmed_and_stopwords_dropped() -> None:
    assert tokenize("Who won the women's singles at Wimbledon?") == [
        "won",
        "women",
        "singl",
        "wimbledon",
    ]


def test_mixed_text_fullwidth_forms_and_numbers() -> None:
    assert tokenize("ＧＰＴ－３发布于２０２０年") == ["gpt-3", "发布", "发", "布", "2020", "年"]


def test_index_and_query_sides_agree() -> None:
    passage = tokenize("退货政策：自收到商品之日起七天内可以无理由退货。")
    query = tokenize("七天内可以退货吗")
    assert set(query) <= set(passage)
