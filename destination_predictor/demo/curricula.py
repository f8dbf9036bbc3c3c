"""Demo education plans (培养方案) for four majors and three cohorts.

The real plans are private. These stand-ins keep what the engine depends on:
the 12-column layout read by position, 必修/选修 rows, old-style category
names for 2022/2023 and the renamed 2024 ones, courses repeated once per
semester, and the mess real files have (a date in a semester cell, a note
row, a course listed under two categories, a stray space in a category).
Every category maps under the default category map, so a demo run warns only
about the grade mess it is meant to show; the engine's handling of a row
without a category is tested with plans of its own (tests/test_engine_messy.py).
Course names are generic; no real plan is copied. The files are byte-for-byte
reproducible (fixed document and zip-entry dates).

Run ``python -m destination_predictor.demo.curricula --out plans``.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from ._io import atomic_target

MAJORS: tuple[str, ...] = ("智能科学与技术", "物联网工程", "电信工程及管理", "电子信息工程")
YEARS: tuple[int, ...] = (2022, 2023, 2024)

HEADER: tuple[str, ...] = (
    "category", "course_id", "course_name", "credit", "total_hours", "theory_hours",
    "practice_hours", "semester", "required", "exam_type", "remarks", "major",
)

# The deliberately broken rows; tests and docs refer to them by these names.
NOTE_TEXT = "注：劳动教育每学期不少于8学时，毕业设计成绩在第8学期记录"
DATE_SEMESTER_COURSE = "电子工艺实习"
TWO_CATEGORY_COURSE = "中国近现代史纲要"
# Once a required row without a category (every demo run warned about it);
# now under 公共课, which both the default and the deployed exact map know.
ADVISING_COURSE = "学业规划与指导"
ADVISING_CATEGORY = "公共课"

# Majors whose programming course sits under 计算机基础 rather than 学科基础.
_COMPUTER_BASE_MAJORS = frozenset({"电信工程及管理", "电子信息工程"})
# Majors on the signal-processing side (复变函数, 信号与系统) vs the computing side.
_SIGNAL_MAJORS = _COMPUTER_BASE_MAJORS


class Course(NamedTuple):
    """One plan row before layout; ``kind`` is T(heory), M(ixed), P(ractice) or N(ote)."""

    category: str | None
    name: str
    credit: float | None
    semester: int | datetime | None
    required: str | None
    kind: str = "T"
    remarks: str | None = None


def _req(cat: str | None, name: str, credit: float, sem: int | datetime, kind: str = "T",
         remarks: str | None = None) -> Course:
    return Course(cat, name, credit, sem, "必修", kind, remarks)


def _opt(cat: str, name: str, credit: float, sem: int | datetime, kind: str = "T",
         remarks: str | None = None) -> Course:
    return Course(cat, name, credit, sem, "选修", kind, remarks)


# --- courses every major takes ---------------------------------------------

def _political() -> list[Course]:
    c = "思想政治理论"
    rows = [
        _req(c, "思想道德与法治", 3, 1),
        _req(c, TWO_CATEGORY_COURSE, 2.5, 2),
        _req(c, "马克思主义基本原理", 2.5, 3),
        _req(c, "毛泽东思想和中国特色社会主义理论体系概论", 3, 4, "M"),
        _req(c, "习近平新时代中国特色社会主义思想概论", 3, 5, "M"),
    ]
    rows += [_req(c, f"形势与政策{i}", 0.4, i) for i in range(1, 6)]
    rows += [
        _opt(c, "中共党史", 1, 2, remarks="至少选修一门"),
        _opt(c, "社会主义发展史", 1, 2, remarks="至少选修一门"),
    ]
    return rows


def _maths(year: int, major: str, cat: str) -> list[Course]:
    rows = [
        _req(cat, "高等数学A(上)", 5, 1),
        _req(cat, "线性代数", 3, 1),
        _req(cat, "高等数学A(下)", 5, 2),
        _req(cat, "大学物理(上)" if year < 2024 else "大学物理（I）", 3.5 if year < 2024 else 4, 2),
        _req(cat, "大学物理(下)" if year < 2024 else "大学物理（II）", 3.5 if year < 2024 else 2, 3),
        _req(cat, "概率论与数理统计", 3, 3),
    ]
    if major in _SIGNAL_MAJORS:
        rows.append(_req(cat, "复变函数与积分变换", 2, 3))
    else:
        rows.append(_req(cat, "离散数学", 3, 3))
    return rows


def _subject_base(major: str) -> list[Course]:
    c = "学科基础"
    rows = [
        _req(c, "电路分析基础", 4, 2, "M"),
        _req(c, "模拟电子技术", 3, 3, "M"),
        _req(c, "数字电路与逻辑设计", 3, 3, "M"),
        _req(c, "数据结构", 3, 3, "M"),
    ]
    if major in _SIGNAL_MAJORS:
        rows.append(_req(c, "信号与系统", 3.5, 4))
    else:
        rows.append(_req(c, "面向对象程序设计", 3, 2, "M"))
    return rows


def _programming(major: str) -> list[Course]:
    cat = "计算机基础" if major in _COMPUTER_BASE_MAJORS else "学科基础"
    return [_req(cat, "程序设计基础(C语言)", 3, 1, "M")]


def _labour(cat: str) -> list[Course]:
    # One row per semester, same name: the engine must keep every duplicate.
    return [_req(cat, "劳动教育", 0.5, sem, "P") for sem in range(1, 8)]


def _thesis(cat: str) -> list[Course]:
    return [
        _req(cat, "毕业设计", 8, 7, "P", "第8学期记录成绩"),
        _req(cat, "毕业设计", 8, 8, "P", "第8学期记录成绩"),
    ]


def _messy_tail() -> list[Course]:
    return [Course(None, NOTE_TEXT, None, None, None, "N")]


def _old_common(year: int, major: str) -> list[Course]:
    """2022/2023 plans: the category names the deployed exact map knows."""
    rows = _political()
    rows += [
        _req("英语", "大学英语(一)", 3, 1),
        _req("英语", "英语听说(一)", 1, 1),
        _req("英语", "大学英语(二)", 3, 2),
        _req("英语", "英语听说(二)", 1, 2),
        _opt("英语", "学术英语写作", 2, 3),
        _opt("英语", "科技英语阅读", 2, 3),
        _opt("英语", "雅思强化", 2, 4),
    ]
    pe = "体育、美育" if year <= 2022 else "体育"
    rows += [_req(pe, f"体育({n})", 1, i + 1, "M") for i, n in enumerate("一二三四")]
    if year <= 2022:
        rows.append(_req(pe, "艺术导论", 1, 3))
    rows.append(_req("军事理论", "军事理论", 2, 1))
    if year >= 2023:
        rows.append(_req("军事理论", "军事技能", 2, 1, "P"))
    rows += [
        _req("心理健康", "大学生心理健康教育", 0.5, 1),
        _req("安全教育", "大学生安全教育", 0, 1, remarks="不计学分，须考核合格"),
        _req(ADVISING_CATEGORY, ADVISING_COURSE, 1, 1),
    ]
    # Real 2022 files of the signal majors carry a stray space in this category.
    maths = "数学与 自然科学" if year <= 2022 and major in _SIGNAL_MAJORS else "数学与自然科学"
    rows += _maths(year, major, maths)
    rows.append(_req(maths, "大学物理实验", 1, 3, "P"))
    rows += _programming(major)
    rows += _subject_base(major)
    innov = "学院特色创新必修3学分" if year >= 2023 and major == "电信工程及管理" else "学院特色创新必修5学分"
    rows += [
        _req(innov, "信息通信技术导论", 1, 1),
        _req(innov, "创新创业基础", 1, 2),
        _req(innov, "工程伦理", 1, 6),
        _opt(innov, "学科竞赛实践", 2, 4, "P"),
        _opt(innov, "科研训练", 2, 5, "P"),
        _opt(innov, "创新项目实践", 2, 6, "P"),
    ]
    p = "实践教学"
    rows += [
        _req(p, TWO_CATEGORY_COURSE, 0.5, 2, "P", "社会实践"),
        _req(p, "程序设计实践", 1, 1, "P"),
        _req(p, "认识实习", 1, 2, "P"),
        # A "3-4" typed into Excel became a date.
        _req(p, DATE_SEMESTER_COURSE, 1, datetime(year, 3, 4), "P"),
    ]
    rows += _labour(p)
    return rows


def _new_common(year: int, major: str) -> list[Course]:
    """2024 plans: the renamed categories the exact map leaves unknown."""
    rows = _political()
    rows += [
        _req("体育基础", "体育基础", 1, 1, "M"),
        _req("体育基础", "体育基础", 1, 2, "M"),
        _req("体育基础", "体育专项(上)", 1, 3, "M"),
        _req("体育基础", "体育专项(下)", 1, 4, "M"),
        _req("国防教育", "军事理论", 2, 1),
        _req("国防教育", "军事技能", 2, 1, "P"),
        _req("心理健康", "大学生心理健康（慕课）", 0, 2, remarks="成绩合格方可毕业"),
        _req("国家安全", "国家安全教育（上）", 0.5, 1),
        _req("国家安全", "国家安全教育（下）", 0.5, 2),
        _req(ADVISING_CATEGORY, ADVISING_COURSE, 1, 1),
        _req("国际交流", "综合英语（上）", 2, 1),
        _req("国际交流", "英语视听说（上）", 1, 1),
        _req("国际交流", "综合英语（下）", 2, 2),
        _req("国际交流", "英语视听说（下）", 1, 2),
        _req("国际交流", "跨文化交际", 2, 3),
        _opt("国际交流", "学术英语写作", 2, 3),
        _opt("国际交流", "国际交流英语", 2, 4),
        _opt("国际交流", "英语演讲与辩论", 2, 4),
        _req("AI+ICT素质课", "信息通信技术导论", 1, 1),
        _opt("AI+ICT素质课", "数字素养与技能", 1, 2, remarks="指选"),
        _req("AI+ICT素质课", "人工智能通识", 2.5, 3),
    ]
    rows += _maths(year, major, "数学与自然科学基础")
    rows += _programming(major)
    rows += _subject_base(major)
    lab = "基础实验模块"
    rows += [
        _req(lab, "程序设计实验", 1, 1, "P"),
        _req(lab, "电路分析实验", 0.5, 2, "P"),
        _req(lab, "大学物理实验", 1, 3, "P"),
    ]
    hum = "人文素养模块"
    rows += [
        _req(hum, "创新创业基础", 1, 2),
        _opt(hum, "大学语文", 2, 2),
        _opt(hum, "艺术导论", 1, 3),
        _opt(hum, "中华优秀传统文化", 1, 4),
        _opt(hum, "科技写作", 1, 5),
        _req(hum, "工程伦理与职业素养", 1, 6),
    ]
    p = "公共实践模块"
    rows += [
        _req(p, TWO_CATEGORY_COURSE, 0.5, 2, "P", "社会实践"),
        _req(p, "认识实习", 1, 2, "P"),
        _req(p, DATE_SEMESTER_COURSE, 1, datetime(year, 3, 4), "P"),
    ]
    rows += _labour(p)
    return rows


# --- major courses -----------------------------------------------------------

# Old style: (专业基础 category text, [专业基础 rows], [专业课 rows], [实践教学 rows]).
# Tuples are (name, credit, semester, required?, kind).
_OLD_MAJOR: dict[str, tuple[str, list[tuple], list[tuple], list[tuple]]] = {
    "智能科学与技术": (
        "专业课基础",
        [("人工智能导论", 2, 3, True, "T"), ("算法设计与分析", 3, 4, True, "M"),
         ("机器学习", 3, 4, True, "M"), ("操作系统", 3, 4, True, "T"),
         ("数据库原理", 3, 5, True, "M")],
        [("模式识别", 3, 5, True, "T"), ("深度学习", 3, 5, True, "M"),
         ("自然语言处理", 2.5, 6, True, "M"), ("计算机视觉", 2.5, 6, True, "M"),
         ("智能机器人", 2, 6, True, "M"), ("知识图谱", 2, 6, False, "T"),
         ("智能控制", 2, 6, False, "T"), ("大数据技术", 2, 6, False, "M"),
         ("强化学习", 2, 7, False, "T"), ("多智能体系统", 2, 7, False, "T"),
         ("云计算", 2, 7, False, "T")],
        [("机器学习课程设计", 1, 4, True, "P"), ("人工智能综合实训", 2, 5, True, "P"),
         ("智能系统创新设计", 2, 6, False, "P"), ("智能科学与技术专业实习", 2, 7, True, "P")],
    ),
    "物联网工程": (
        "专业基础",
        [("物联网导论", 2, 2, True, "T"), ("计算机网络", 3, 4, True, "M"),
         ("嵌入式系统原理", 3, 4, True, "M"), ("传感器原理与应用", 3, 4, True, "M"),
         ("操作系统", 3, 5, True, "T")],
        [("无线传感器网络", 3, 5, True, "M"), ("RFID原理与应用", 2.5, 5, True, "M"),
         ("物联网通信技术", 3, 5, True, "T"), ("物联网安全", 2, 6, True, "T"),
         ("边缘计算", 2, 6, True, "M"), ("移动应用开发", 2, 6, False, "M"),
         ("智能家居系统", 2, 6, False, "M"), ("工业互联网", 2, 7, False, "T"),
         ("车联网技术", 2, 7, False, "T"), ("云平台技术", 2, 7, False, "M")],
        [("嵌入式系统课程设计", 1, 4, True, "P"), ("物联网综合实训", 2, 6, True, "P"),
         ("物联网创新实践", 2, 6, False, "P"), ("物联网工程专业实习", 2, 7, True, "P")],
    ),
    "电信工程及管理": (
        "专业基础",
        [("管理学原理", 2, 3, True, "T"), ("通信原理", 4, 4, True, "M"),
         ("电磁场与电磁波", 3, 4, True, "T"), ("计算机网络", 3, 4, True, "M"),
         ("数字信号处理", 3, 5, True, "M")],
        [("移动通信", 3, 5, True, "M"), ("光纤通信", 2.5, 5, True, "T"),
         ("信息论与编码", 2, 5, False, "T"), ("通信网络管理", 2.5, 6, True, "T"),
         ("电信运营管理", 2, 6, True, "T"), ("项目管理", 2, 6, True, "T"),
         ("技术经济学", 2, 6, False, "T"), ("市场营销", 2, 6, False, "T"),
         ("现代交换技术", 2, 7, False, "T"), ("网络规划与优化", 2, 7, False, "M")],
        [("通信原理课程设计", 1, 5, True, "P"), ("电信业务综合实训", 2, 6, True, "P"),
         ("通信系统仿真实践", 2, 6, False, "P"), ("电信工程及管理专业实习", 2, 7, True, "P")],
    ),
    "电子信息工程": (
        "专业基础",
        [("通信原理", 4, 4, True, "M"), ("电磁场与电磁波", 3, 4, True, "T"),
         ("微机原理与接口技术", 3, 4, True, "M"), ("数字信号处理", 3, 5, True, "M"),
         ("高频电子线路", 3, 5, True, "M")],
        [("数字图像处理", 3, 5, True, "M"), ("嵌入式系统设计", 3, 5, True, "M"),
         ("多媒体通信", 2.5, 6, True, "T"), ("射频电路设计", 2.5, 6, True, "M"),
         ("语音信号处理", 2, 6, True, "T"), ("机器学习基础", 2, 6, False, "T"),
         ("FPGA设计", 2, 6, False, "M"), ("视频编码技术", 2, 7, False, "T"),
         ("雷达原理", 2, 7, False, "T"), ("天线原理", 2, 7, False, "T")],
        [("电子线路课程设计", 1, 4, True, "P"), ("电子设计竞赛实践", 2, 5, False, "P"),
         ("电子系统综合设计", 2, 6, True, "P"), ("电子信息工程专业实习", 2, 7, True, "P")],
    ),
}

# New style: {module category: [(name, credit, semester, required?, kind)]}, in
# plan order; the last module is the major's practice module (suffix 模块).
_NEW_MAJOR: dict[str, dict[str, list[tuple]]] = {
    "智能科学与技术": {
        "专业基础": [("人工智能导论", 2, 3, True, "T"), ("算法设计与分析", 3, 4, True, "M"),
                 ("机器学习", 3, 4, True, "M"), ("操作系统", 3, 4, True, "T")],
        "专业课-智能感知模块": [("模式识别", 3, 5, True, "T"), ("计算机视觉", 2.5, 6, True, "M"),
                       ("智能传感技术", 2, 6, False, "M"), ("三维视觉", 2, 7, False, "T")],
        "专业课-智能计算模块": [("深度学习", 3, 5, True, "M"), ("自然语言处理", 2.5, 6, True, "M"),
                       ("强化学习", 2, 7, False, "T"), ("大模型原理与应用", 2, 7, False, "M")],
        "专业课-前沿技术模块": [("智能机器人", 2, 6, True, "M"), ("知识图谱", 2, 7, False, "T"),
                       ("具身智能", 2, 7, False, "T")],
        "智能系统实践模块": [("机器学习课程设计", 1, 4, True, "P"), ("人工智能综合实训", 2, 5, True, "P"),
                     ("智能系统创新设计", 2, 6, False, "P"),
                     ("智能科学与技术专业实习", 2, 7, True, "P")],
    },
    "物联网工程": {
        "专业基础": [("物联网导论", 2, 2, True, "T"), ("计算机网络", 3, 4, True, "M"),
                 ("嵌入式系统原理", 3, 4, True, "M"), ("传感器原理与应用", 3, 4, True, "M")],
        "专业课-感知识别模块": [("RFID原理与应用", 2.5, 5, True, "M"), ("无线传感器网络", 3, 5, True, "M"),
                       ("智能传感器设计", 2, 6, False, "M"), ("机器视觉感知", 2, 7, False, "T")],
        "专业课-物联网络模块": [("物联网通信技术", 3, 5, True, "T"), ("边缘计算", 2, 6, True, "M"),
                       ("工业互联网", 2, 7, False, "T"), ("车联网技术", 2, 7, False, "T")],
        "专业课-前沿技术模块": [("物联网安全", 2, 6, True, "T"), ("数字孪生", 2, 7, False, "M"),
                       ("智能家居系统", 2, 6, False, "M")],
        "物联网系统实践模块": [("嵌入式系统课程设计", 1, 4, True, "P"), ("物联网综合实训", 2, 6, True, "P"),
                      ("物联网创新实践", 2, 6, False, "P"), ("物联网工程专业实习", 2, 7, True, "P")],
    },
    "电信工程及管理": {
        "专业基础": [("管理学原理", 2, 3, True, "T"), ("通信原理", 4, 4, True, "M"),
                 ("电磁场与电磁波", 3, 4, True, "T"), ("计算机网络", 3, 4, True, "M"),
                 ("数字信号处理", 3, 5, True, "M")],
        "专业课-通信系统模块": [("移动通信", 3, 5, True, "M"), ("光纤通信", 2.5, 5, True, "T"),
                       ("信息论与编码", 2, 5, False, "T"), ("卫星通信", 2, 7, False, "T")],
        "专业课-管理科学模块": [("电信运营管理", 2, 6, True, "T"), ("项目管理", 2, 6, True, "T"),
                       ("技术经济学", 2, 6, False, "T"), ("市场营销", 2, 6, False, "T")],
        "专业课-前沿技术模块": [("5G网络技术", 2, 6, True, "M"), ("网络规划与优化", 2, 7, False, "M"),
                       ("通信大数据分析", 2, 7, False, "M")],
        "电信工程实践模块": [("通信原理课程设计", 1, 5, True, "P"), ("电信业务综合实训", 2, 6, True, "P"),
                     ("通信系统仿真实践", 2, 6, False, "P"),
                     ("电信工程及管理专业实习", 2, 7, True, "P")],
    },
    "电子信息工程": {
        "专业基础": [("通信原理", 4, 4, True, "M"), ("电磁场与电磁波", 3, 4, True, "T"),
                 ("微机原理与接口技术", 3, 4, True, "M"), ("数字信号处理", 3, 5, True, "M"),
                 ("高频电子线路", 3, 5, True, "M")],
        "专业课-媒体处理模块": [("数字图像处理", 3, 5, True, "M"), ("多媒体通信", 2.5, 6, True, "T"),
                       ("视频编码技术", 2, 7, False, "T"), ("虚拟现实技术", 2, 7, False, "M")],
        "专业课-电子系统模块": [("嵌入式系统设计", 3, 5, True, "M"), ("射频电路设计", 2.5, 6, True, "M"),
                       ("FPGA设计", 2, 6, False, "M"), ("天线原理", 2, 7, False, "T")],
        "专业课-人工智能模块": [("机器学习基础", 2, 6, True, "T"), ("语音信号处理", 2, 6, False, "T"),
                       ("智能信号处理", 2, 7, False, "T")],
        "电子系统实践模块": [("电子线路课程设计", 1, 4, True, "P"), ("电子设计竞赛实践", 2, 5, False, "P"),
                     ("电子系统综合设计", 2, 6, True, "P"), ("电子信息工程专业实习", 2, 7, True, "P")],
    },
}


def _course(cat: str, spec: tuple) -> Course:
    name, credit, sem, required, kind = spec
    return (_req if required else _opt)(cat, name, credit, sem, kind)


def curriculum(year: int, major: str) -> list[Course]:
    """All rows of one demo plan, in file order (before 2024: old category names)."""
    if major not in _OLD_MAJOR:
        raise ValueError(f"没有“{major}”的示例培养方案，可选: {'、'.join(MAJORS)}")
    if year < 2024:
        base_cat, base, majors, practice = _OLD_MAJOR[major]
        rows = _old_common(year, major)
        rows += [_course(base_cat, s) for s in base]
        rows += [_course("专业课", s) for s in majors]
        if year >= 2023 and major == "智能科学与技术":
            rows.append(_opt("专业课", "大模型应用开发", 2, 7, "M"))
        rows += [_course("实践教学", s) for s in practice]
        rows += _thesis("实践教学")
    else:
        rows = _new_common(year, major)
        modules = _NEW_MAJOR[major]
        for cat, specs in modules.items():
            rows += [_course(cat, s) for s in specs]
        rows += _thesis(list(modules)[-1])
    return rows + _messy_tail()


def _number(x: float) -> int | float:
    """Whole numbers as int, so cells read back as 2 rather than 2.0."""
    return int(x) if float(x).is_integer() else round(float(x), 2)


def course_id(course: Course) -> str:
    """A stable 10-digit id: the same course in the same category shares it across plans."""
    key = f"{course.category or ''}|{course.name}".encode()
    return f"3{zlib.crc32(key) % 10**9:09d}"


def plan_cells(year: int, major: str) -> list[list[object]]:
    """The 12 cells of every row of one plan (header excluded)."""
    out: list[list[object]] = []
    for c in curriculum(year, major):
        if c.kind == "N":
            out.append([None, None, c.name] + [None] * 9)
            continue
        credit = float(c.credit or 0)
        if c.kind == "P":
            total, practice = credit * 24, credit * 24
        elif c.kind == "M":
            total = credit * 16
            practice = round(total / 4)
        else:
            total, practice = credit * 16, 0.0
        exam = "考试" if c.required == "必修" and c.kind != "P" and credit >= 2 else "考查"
        out.append([
            c.category, course_id(c), c.name, _number(credit), _number(total),
            _number(total - practice), _number(practice), c.semester, c.required, exam,
            c.remarks, major,
        ])
    return out


def plan_file(plans_dir: str | Path, year: int, major: str) -> Path:
    return Path(plans_dir) / f"education-plan{year}" / f"{year}级{major}培养方案.xlsx"


def write_plan(path: str | Path, year: int, major: str) -> Path:
    """Write one plan workbook (first sheet, header row, then the rows)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "培养方案"
    ws.append(list(HEADER))
    for row in plan_cells(year, major):
        ws.append(row)
    for cell in ws["H"][1:]:
        if isinstance(cell.value, datetime):
            cell.number_format = "yyyy/m/d"
    # Fixed document dates keep regenerated files free of needless churn.
    stamp = datetime(year, 7, 1)
    wb.properties.created = stamp
    buf = io.BytesIO()
    wb.save(buf)
    with atomic_target(path) as tmp:
        tmp.write_bytes(_reproducible(buf.getvalue(), stamp))
    return Path(path)


_MODIFIED = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")


def _reproducible(xlsx: bytes, stamp: datetime) -> bytes:
    """The same workbook with every date openpyxl takes from the clock fixed to
    ``stamp``: the document's ``modified`` property and each zip entry's time.
    Regenerating the bundled plans then changes a file only when its rows change."""
    when = stamp.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx)) as src, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "docProps/core.xml":
                data = _MODIFIED.sub(rb"\g<1>" + when + rb"\g<2>", data)
            fixed = zipfile.ZipInfo(info.filename, date_time=stamp.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = info.external_attr
            dst.writestr(fixed, data)
    return out.getvalue()


def write_demo_plans(plans_dir: str | Path, years: Iterable[int] = YEARS,
                     majors: Sequence[str] = MAJORS) -> list[Path]:
    """Write ``plans_dir/education-plan{YEAR}/{YEAR}级{major}培养方案.xlsx`` for each pair."""
    return [write_plan(plan_file(plans_dir, y, m), y, m) for y in years for m in majors]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m destination_predictor.demo.curricula",
        description="生成示例培养方案（四个专业、2022-2024 级）",
    )
    parser.add_argument("--out", default="plans", help="输出目录（默认 plans）")
    parser.add_argument("--years", type=int, nargs="+", default=list(YEARS), help="年级")
    args = parser.parse_args(argv)
    paths = write_demo_plans(args.out, args.years)
    for p in paths:
        print(f"已写入 {p}")
    print(f"共 {len(paths)} 个培养方案")
    return 0


if __name__ == "__main__":
    sys.exit(main())
