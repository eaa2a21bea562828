"""Tip extraction (bot.domain.tips): examples written for these tests, in both languages.

None of these texts comes from the labelled data sets; the development set is measured
with ``scripts/eval_tips`` instead.
"""

from __future__ import annotations

import time

import pytest
from tipslib import Prediction, evaluate, span_f1

from bot.domain.tips import CATEGORIES, TipAnalysis, analyse, locate
from bot.domain.tips.identifiers import find_identifiers

# --------------------------------------------------------------------------- not tips

NOT_TIPS = [
    # thanks, acknowledgements, greetings
    "收到，谢谢李警官",
    "好的好的，我马上下楼",
    "谢谢大家帮忙，我家孩子已经找到了",
    "Noted, thanks officer!",
    "Thanks everyone, the lost dog is home safe 🐶",
    "早上好各位邻居☀️",
    "Happy Lantern Festival everyone!",
    # forwarded police notices and alerts, generic warnings and advice
    "【社区民警 王警官】近期入室盗窃多发，出门请锁好门窗，发现可疑人员及时报警",
    "转发：警方提醒，冒充客服退款的都是诈骗，千万不要点陌生链接",
    "骗子太多了，大家接到陌生电话一定要小心",
    "[Officer Chen] Bike thefts are up across the district, please use a D-lock",
    "Reminder: never share verification codes, real banks will never ask for them",
    # events, drills, lectures
    "本周六上午物业组织消防演练，届时会有警报声，请大家配合疏散",
    "下周二下午两点社区活动室有防诈骗讲座，欢迎老年朋友报名",
    "Fire drill on Thursday at 10am, please don't use the lifts during the drill",
    # ads and spam
    "专业开锁换锁修水管，24小时上门服务，电话13611112222",
    "Selling my old e-bike, barely used, 800 RMB, DM me",
    # crime news from elsewhere, films and books
    "看新闻说外省有个小区一晚上被偷了十几户，好吓人",
    "Police in another district busted a phone scam ring, saw it on the news",
    "刚看完《扫黑风暴》，里面的黑社会太嚣张了",
    "Just finished a true crime novel about a casino heist, couldn't put it down",
    # hypotheticals and questions
    "如果半夜听到有人撬门，是先报警还是先开灯？",
    "What would you do if someone tried to break into your car?",
    "请问派出所办居住证要带什么材料？",
    # lost and found, pets
    "谁捡到一串钥匙？上面挂着一个小熊，昨天在南门附近丢的",
    "Lost my keys somewhere near the playground, red keyring, please message me",
    "我家猫把邻居家的鱼'偷'吃了哈哈哈",
    "lol the dog just 'stole' my sandwich off the table",
    # fee complaints, routine repairs, parking squabbles
    "物业费又涨了，服务一点没变好",
    "Why are the management fees going up again? Nothing ever gets fixed",
    "楼道的声控灯坏了好几天了，物业什么时候来修？",
    "The lift in our building is broken again, had to walk up 15 floors",
    "楼下那辆车又停我车位上了，烦死了",
    "To the owner of the black Audi: you're in my parking spot again, please move it",
    # retractions, old handled incidents, minor things
    "更新一下：刚才说的可疑的人是新来的快递员，误会了",
    "Update: my bike wasn't stolen after all, my husband moved it 🙈",
    "上个月被偷的电瓶车已经找回来了，谢谢民警",
    "We had a break-in years ago when we lived in Hongkou, still nervous about it",
    # small-stakes mahjong among neighbours
    "楼上几个老邻居每天下午搓麻将，输赢就几块钱，开心就好",
    "Our block's mahjong afternoon is on Friday, 2 yuan a game, all welcome!",
    # courier waiting at the gate
    "快递小哥在北门等了半天了，谁的快递赶紧去拿",
    "The courier has been waiting at the east gate for 20 minutes, can someone let him in?",
    # one-off noise, arguments
    "楼上邻居昨晚吵架声音有点大，不过很快就没声音了",
    "My neighbour's dog barks a bit in the mornings, not a big deal",
]


@pytest.mark.parametrize("text", NOT_TIPS)
def test_not_tips(text: str) -> None:
    a = analyse(text)
    assert not a.is_tip, (text, a)
    assert a.confidence < 0.5
    assert (a.category, a.emergency, a.location, a.identifiers, a.hotlines) == (
        None,
        False,
        None,
        (),
        (),
    )


# --------------------------------------------------------------------------- categories

TIPS = [
    # (text, category)
    ("3号楼502家里被偷了，门锁被撬坏，抽屉全翻乱了", "burglary"),
    (
        "Someone forced the back door of the noodle shop on the ground floor of Block 4 last night",
        "burglary",
    ),
    ("5号楼车棚里有人在剪别人的车锁，已经剪开两辆了", "theft"),
    ("My car window was smashed in the underground garage and my laptop bag is gone", "theft"),
    ("B2车库的车窗被人砸了，车里的包被拿走了", "theft"),
    ("有人在9号楼楼道里给电瓶车充电，线从窗户里拉出来的", "fire_hazard"),
    ("The fire exit on 6F of Tower C is chained shut and blocked with boxes", "fire_hazard"),
    ("有个自称燃气公司的人上门说要换管子，收了我妈两百块", "fraud"),
    (
        "A man claiming to be from the bank called my dad and asked for his verification code",
        "fraud",
    ),
    ("8号楼1203每天晚上一帮人在里面赌钱，门口还有人放风", "gambling"),
    (
        "Someone keeps adding residents to a WeChat group for an online casino, "
        "promising easy money",
        "gambling",
    ),
    ("垃圾房门口捡到好几个用过的针管，还有烧过的锡纸", "drugs"),
    ("Found used syringes and burnt foil in the stairwell of Block 2 this morning", "drugs"),
    ("有人往各家门缝里塞招嫖小卡片，12号楼每层都有", "prostitution"),
    (
        "The new massage place by the south gate only lets men in after midnight "
        "and hands out sexy cards",
        "prostitution",
    ),
    ("有个陌生男的一层一层拧门把手，问他干嘛就跑了", "suspicious_person"),
    (
        "A guy has been trying car doors one by one in the car park, hood up, looking around",
        "suspicious_person",
    ),
    ("东门岗亭旁边两个人打起来了，有一个拿着棍子", "violence"),
    ("The man in 1802 threatened to stab my son if he plays in the corridor again", "violence"),
    ("儿童乐园的滑梯断了，露出很锋利的铁皮，小孩子容易割伤", "safety_hazard"),
    (
        "Someone keeps throwing bottles from the upper floors of Building 5 onto the path",
        "safety_hazard",
    ),
    ("17号楼楼顶有人私自搭了个铁皮房，物业说管不了", "public_order"),
    (
        "Drunk guys smashing bottles and shouting outside the convenience store "
        "every night past 2am",
        "public_order",
    ),
    ("我爸早上出门买菜到现在没回来，有老年痴呆，穿灰色外套", "other"),
    ("A car with no plates has been parked by the west gate for months, covered in dust", "other"),
]


@pytest.mark.parametrize(("text", "category"), TIPS)
def test_tip_categories(text: str, category: str) -> None:
    a = analyse(text)
    assert a.is_tip and a.confidence >= 0.5, (text, a)
    assert a.category == category, (text, a)


def test_mixed_language_tips() -> None:
    a = analyse("3号楼 lobby 有个 guy 在试每辆电动车的锁，looks suspicious")
    assert a.is_tip and a.category == "suspicious_person"
    b = analyse("Someone stole my 快递 from the 驿站 shelf again!!")
    assert b.is_tip and b.category == "theft"


# --------------------------------------------------------------------------- rulings


def test_rulings_between_categories() -> None:
    # pried lock, nothing taken -> burglary; trying handles without damage -> suspicious
    assert analyse("6号楼701的门锁被人撬过，门框上有撬痕，家里倒是没少东西").category == "burglary"
    assert analyse("有个男的在7号楼一户户拧门把手，没撬").category == "suspicious_person"
    # car broken into -> theft
    assert (
        analyse("Someone broke into my car in the B1 car park and took the dashcam").category
        == "theft"
    )
    # fake fire inspector selling extinguishers -> fraud
    assert analyse("有人冒充消防检查挨家挨户推销灭火器，不买就说要罚款").category == "fraud"
    # vehicle blocking a fire lane -> fire hazard; car in my space -> not a tip
    assert analyse(
        "A white van has been parked across the fire lane by Block 3 all day"
    ).category == ("fire_hazard")
    assert not analyse("Someone parked in my space in B1 again, so rude").is_tip
    # abandoned car -> other
    assert analyse("西门停车场有辆车停了半年了，没挂牌照，轮胎都瘪了").category == "other"


# --------------------------------------------------------------------------- emergencies

EMERGENCIES = [
    # (text, hotlines that must be present, the first one)
    ("着火了！7号楼顶楼在冒黑烟，快打119", {"119"}, "119"),
    (
        "Smoke is pouring out of a kitchen window on 9F of Tower B right now, call 119!",
        {"119"},
        "119",
    ),
    ("3号楼2单元楼道里一股很重的煤气味，现在还闻得到", {"119"}, "119"),
    ("There's a strong smell of gas on the 4th floor of Building 2", {"119"}, "119"),
    ("快来人！8号楼楼下两个人打起来了，有一个头破了在流血", {"110", "120"}, "110"),
    (
        "My neighbour in 1502 is beating his wife, I can hear her screaming right now",
        {"110"},
        "110",
    ),
    ("我在外地，手机监控看到有人在我家里翻东西，现在还在里面！12号楼703", {"110"}, "110"),
    ("There's someone inside 604 right now with a torch, the owners are abroad", {"110"}, "110"),
    ("电梯困人了！5号楼2号电梯卡在十楼，里面有个孕妇", {"119"}, "119"),
    (
        "My mum is on the phone right now with a 'police officer' telling her to move "
        "money to a safe account",
        {"110"},
        "110",
    ),
    ("有人坐在15号楼天台边上，腿都悬在外面，好像要跳楼，快打110", {"110"}, "110"),
    ("现在有个人在菜场门口撬别人电瓶车的电瓶", {"110"}, "110"),
]


@pytest.mark.parametrize(("text", "numbers", "first"), EMERGENCIES)
def test_emergencies_and_hotlines(text: str, numbers: set[str], first: str) -> None:
    a = analyse(text)
    assert a.is_tip and a.emergency, (text, a)
    assert numbers <= set(a.hotlines), (text, a.hotlines)
    assert a.hotlines[0] == first
    assert set(a.hotlines) <= {"110", "119", "120"}
    assert len(set(a.hotlines)) == len(a.hotlines)


NOT_EMERGENCIES = [
    # past events, even minutes ago; the danger is over
    "刚才菜市场有人打架，拿刀指着人家，现在人已经走了",
    "A guy snatched a phone outside the supermarket a few minutes ago and sped off, she's ok",
    "昨晚3号楼着火了，已经灭了，没人受伤",
    # static hazards, sightings without an act, scams with no payment under way
    "有人在12号楼一楼楼道口飞线给电瓶车充电，晚上一直插着不拔",
    "The railing on the 3rd floor walkway of Block 11 is loose and wobbles",
    "有个男的最近老在幼儿园围墙外面转悠，往里面看",
    "有人冒充物业打电话让我加微信交维修费，号码13917261234，我没理他",
    "Someone was trying door handles on floor 9 of Building 3 around 2pm, then left",
    # missing person
    "我家老爷子上午出门到现在没回来，有阿尔茨海默症",
]


@pytest.mark.parametrize("text", NOT_EMERGENCIES)
def test_not_emergencies(text: str) -> None:
    a = analyse(text)
    assert a.is_tip, (text, a)
    assert not a.emergency and a.hotlines == (), (text, a)


# --------------------------------------------------------------------------- locations

LOCATIONS = [
    ("5号楼3单元楼道里堆满了纸箱和旧家具，消防通道完全堵死了", "5号楼3单元楼道"),
    ("9号楼22楼楼梯间有人在抽烟，还扔了一地烟头，旁边就是一堆纸箱", "9号楼22楼楼梯间"),
    ("地下车库B2最里面的角落每天都有人围着赌钱", "地下车库B2最里面的角落"),
    ("有人在儿童乐园旁边卖白色小袋子装的东西", "儿童乐园旁边"),
    ("楼上1902天天半夜砸东西骂人，物业调解了三次都没用", "1902"),
    ("菜场门口的非机动车停放区有人在偷电瓶", "菜场门口的非机动车停放区"),
    (
        "Someone stole two e-bike batteries from the bike shed at Building 6 last night",
        "bike shed at Building 6",
    ),
    (
        "Found used needles in the fire stairwell of Block 10 between 18F and 19F",
        "fire stairwell of Block 10 between 18F and 19F",
    ),
    (
        "A man was trying door handles on floor 9 of Building 3 this afternoon",
        "floor 9 of Building 3",
    ),
    ("Smoke coming out of a window on 8F of block 3, someone call 119", "8F of block 3"),
    (
        "my dad's being scammed on the phone right now, he's about to transfer money, "
        "we're in 9-1602",
        "9-1602",
    ),
    (
        "The phone snatcher grabbed it outside Lianhua supermarket and ran toward Hongqiao Rd",
        "Lianhua supermarket",
    ),
    (
        "Shady 'foot massage' shop at 128 Wuning Rd hands out cards with girls' photos",
        "128 Wuning Rd",
    ),
]


@pytest.mark.parametrize(("text", "location"), LOCATIONS)
def test_location_spans(text: str, location: str) -> None:
    a = analyse(text)
    assert a.is_tip, (text, a)
    assert a.location == location, (text, a.location)
    assert a.location is not None and a.location in text


VAGUE = [
    "楼上那户天天半夜打麻将到三点，桌上全是现金，门口还有人放风",
    "对门邻居家里好像进了小偷，门是开着的，东西翻得乱七八糟",
    "Someone upstairs keeps throwing cigarette butts and bottles out of the window onto the path",
    "A scammer called my mum claiming to be from the property office and asked her "
    "to transfer the fee",
]


@pytest.mark.parametrize("text", VAGUE)
def test_vague_places_and_impersonated_offices_give_no_location(text: str) -> None:
    a = analyse(text)
    assert a.is_tip, (text, a)
    assert a.location is None, (text, a.location)


def test_things_named_after_places_are_not_places() -> None:
    a = analyse(
        "my mum just handed over her bank card and PIN to a man who said he was from the "
        "police, he's still at her door"
    )
    assert a.is_tip and a.category == "fraud" and a.emergency
    assert a.location is None


def test_follow_ups_and_lending_are_not_tips() -> None:
    assert not analyse(
        "Police came round yesterday about the burglary in 1103, it's all sorted now"
    ).is_tip
    assert not analyse("我家孩子的自行车借给邻居了，别以为是被偷的哈").is_tip
    assert not analyse("我们楼的微信群能不能禁止发赌博广告？烦死了").is_tip


def test_impersonation_without_a_money_ask_is_casing() -> None:
    a = analyse(
        "Two men in hi-vis vests were photographing every door lock on the 7th floor and "
        "said they were from the council"
    )
    assert a.category == "suspicious_person" and a.location == "7th floor"


def test_locate_works_on_any_text() -> None:
    assert locate("通缉人员最近在7号楼附近出没") == "7号楼附近"
    assert (
        locate("Wanted man last seen near the bike shed at Building 4") == "bike shed at Building 4"
    )
    assert locate("") is None
    assert locate("no place here at all") is None


# --------------------------------------------------------------------------- identifiers


def test_plates_and_mobiles_as_written() -> None:
    a = analyse(
        "有辆沪A·8K732的白色轿车天天停在消防通道上，还有一辆苏E 73K21，车主电话138 1234 5678"
    )
    assert a.is_tip
    assert a.identifiers == ("沪A·8K732", "苏E 73K21", "138 1234 5678")
    b = analyse(
        "Scam call from +86 139-1726-1234 and a text from 15601839927 asking for my bank card "
        "number, the same guy drives 沪AF83291"
    )
    assert b.is_tip
    assert b.identifiers == ("139-1726-1234", "15601839927", "沪AF83291")


def test_identifier_exclusions() -> None:
    a = analyse(
        "冒充客服的人让我打021-61093385，又说拨打95588或者400-820-8820，我已经转了三千块，"
        "他在1203室，微信号wxid_scam888"
    )
    assert a.is_tip and a.category == "fraud"
    assert a.identifiers == ()
    assert find_identifiers("room 1203, call 110, 12345678901234 and 2024-05-06") == []


def test_identifiers_only_for_tips() -> None:
    a = analyse("Selling a kids' bike, call me on 13761520094")
    assert not a.is_tip and a.identifiers == ()


# --------------------------------------------------------------------------- confidence


def test_confidence_bands() -> None:
    confident = analyse("现在有个男的在16号楼12楼一家一家拧门把手！我在猫眼里看到的")
    assert confident.confidence >= 0.7
    chatter = analyse("今天天气真好")
    assert chatter.confidence < 0.4
    for text in NOT_TIPS + [t for t, _ in TIPS]:
        a = analyse(text)
        assert 0.0 <= a.confidence <= 1.0
        assert a.is_tip == (a.confidence >= 0.5)


def test_lang_hint_is_optional() -> None:
    text = "有人在2号楼地库转悠，拿手机一辆辆拍车牌"
    assert analyse(text) == analyse(text, "zh") == analyse(text, "en")


# --------------------------------------------------------------------------- robustness

ODD_INPUTS = [
    "",
    " ",
    "\n\t\r",
    "\x00\x01\x02\x1f\x7f",
    "\u200f\u202e有人在撬门\u202c\u200e",  # bidi / RTL marks around text
    "\ufeff\u200b\u200d",
    "🔥" * 500,
    "\ud800\udfff lone surrogates",
    "ｆｉｒｅ！！ 着火了 ５号楼",  # full-width letters and digits
    "燒起來了！大樓冒煙",  # traditional characters
    "1" * 5000,
    "撬" * 3000,
    "a" * 70000,
    "Ω≈ç√∫˜µ≤≥÷ 𝕿𝖊𝖘𝖙 ١٢٣ שלום",
]


@pytest.mark.parametrize("text", ODD_INPUTS)
def test_odd_inputs_never_raise(text: str) -> None:
    a = analyse(text)
    assert isinstance(a, TipAnalysis)
    assert 0.0 <= a.confidence <= 1.0
    assert a.location is None or a.location in text
    assert all(i in text for i in a.identifiers)
    assert a.category is None or a.category in CATEGORIES


def test_huge_message_is_bounded() -> None:
    text = ("有人在5号楼撬门，快来人！ someone is breaking into 604 right now " * 1200)[:65536]
    start = time.perf_counter()
    a = analyse(text)
    assert time.perf_counter() - start < 0.5
    assert a.is_tip and a.emergency


def test_traditional_script_is_understood() -> None:
    a = analyse("3號樓樓道裡有人在燒東西，冒了好多煙")
    assert a.is_tip and a.category == "fire_hazard"


# --------------------------------------------------------------------------- eval helpers


def test_span_f1_is_character_overlap() -> None:
    text = "the bike shed at Building 4 last night"
    assert span_f1(text, "bike shed at Building 4", "bike shed at Building 4") == 1.0
    assert span_f1(text, None, "Building 4") == 0.0
    assert 0.5 < span_f1(text, "Building 4", "bike shed at Building 4") < 0.7


def test_evaluate_reports_every_figure() -> None:
    records = [
        {
            "id": "x001",
            "lang": "en",
            "text": "hello",
            "is_tip": False,
            "category": None,
            "emergency": False,
            "location": None,
            "identifiers": [],
        },
        {
            "id": "x002",
            "lang": "zh",
            "text": "5号楼着火了",
            "is_tip": True,
            "category": "fire_hazard",
            "emergency": True,
            "location": "5号楼",
            "identifiers": [],
        },
    ]

    def predict(text: str, lang: str | None) -> Prediction:
        a = analyse(text, lang)
        return Prediction(a.is_tip, a.category, a.emergency, a.location, a.identifiers)

    report = evaluate(records, predict)
    assert report.n == 2
    assert report.figures["tip_f1"] == 1.0
    assert report.figures["location_overlap"] == 1.0
    assert set(report.figures) == {
        "tip_f1",
        "tip_precision",
        "tip_recall",
        "category_accuracy",
        "emergency_precision",
        "emergency_recall",
        "identifier_f1",
        "location_overlap",
    }
