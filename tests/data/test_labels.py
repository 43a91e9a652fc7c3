"""course_lib.data.labels: label spellings that differ in case or surrounding spaces are one category, named by
the most frequent spelling, with notes naming the files; inner spaces keep labels apart."""

import pytest

from course_lib.data.labels import LabelSpellings, label_key


def spellings(*uses):
    s = LabelSpellings()
    for label, file in uses:
        s.add(label, file)
    return s


def test_label_key_ignores_case_and_surrounding_spaces_only():
    assert label_key(" Apple\t") == label_key("apple") == "apple"
    assert label_key("red  apple") != label_key("red apple") and label_key("red_apple") != label_key("red apple")
    assert label_key("STRASSE") == label_key("straße")  # case folded, not just lowered


def test_the_most_frequent_spelling_names_the_category():
    s = spellings(("Apple", "a.json"), ("Apple", "b.json"), ("apple", "c.json"), ("pear", "c.json"))
    mapping, names = s.category_of()
    assert names == ["Apple", "pear"] and mapping == {"Apple": "Apple", "apple": "Apple", "pear": "pear"}
    assert s.notes(mapping) == ["labels 'Apple' in a.json, b.json; 'apple' in c.json are one category, 'Apple' "
                                "(case and surrounding spaces are ignored)"]


def test_a_tie_goes_to_the_lowercase_spelling_and_surrounding_spaces_never_name_a_category():
    mapping, names = spellings(("Apple", "a"), ("apple ", "b")).category_of()
    assert names == ["apple"] and set(mapping) == {"Apple", "apple "}
    assert spellings(("cat ", "a"), ("cat ", "b")).category_of()[1] == ["cat"]


def test_given_categories_take_every_spelling_of_their_name_and_leave_the_rest_unknown():
    s = spellings(("CAT", "a"), ("dog", "b"), ("bird", "c"))
    mapping, names = s.category_of(["cat", "dog"])
    assert names == ["cat", "dog"] and mapping == {"CAT": "cat", "dog": "dog"}  # 'bird' is unknown
    with pytest.raises(ValueError, match="categories 'cat' and 'Cat' differ only in case"):
        s.category_of(["cat", "Cat"])


def test_inner_spaces_keep_two_categories_with_a_note_and_many_files_are_counted():
    s = spellings(*[("red apple", f"{i}.json") for i in range(5)], ("red  apple", "x.json"))
    mapping, names = s.category_of()
    assert names == ["red  apple", "red apple"]
    assert s.notes(mapping) == ["labels 'red  apple' in x.json; 'red apple' in 0.json, 1.json, 2.json and 2 more "
                                "differ only in the spaces inside them and stay 2 categories: rename them if they "
                                "are one"]
    assert spellings(("cat", "a")).notes({"cat": "cat"}) == []
