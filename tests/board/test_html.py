"""results/leaderboard.html: deterministic, self-contained, and sortable in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from board_fixtures import make_repo, write_record

from spfde_core.board import build_board

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _board(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path)
    runs = repo / "results" / "runs"
    for seed, top1 in enumerate((0.70, 0.72)):
        write_record(runs, top1, seed=seed, entry="set", flops=0.3)
    for seed, top1 in enumerate((0.75, 0.74)):
        write_record(runs, top1, seed=seed, entry="rigl", flops=0.5)
    build_board(repo)
    return repo / "results" / "leaderboard.html"


def test_the_page_is_deterministic_self_contained_and_links_records(tmp_path: Path) -> None:
    page = _board(tmp_path)
    text = page.read_text()
    build_board(tmp_path)
    assert page.read_text() == text  # byte-identical on regeneration
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing fetched from the network
    for link in re.findall(r'(?:src|href)="([^"#]+)"', text):
        assert (page.parent / link).exists(), link  # every relative link resolves (records, plots)
    assert 'href="runs/demo/paper-t1-rigl-s90/seed1/metrics.json"' in text
    assert '<img src="plots/pareto-' in text


@pytest.mark.smoke
@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="chromium + chromium-driver not installed (apt-get install)")
def test_a_headless_chromium_loads_sorts_and_screenshots_the_page(tmp_path: Path) -> None:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[dev]')")
    from selenium.webdriver.common.by import By

    page = _board(tmp_path)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    # An explicit driver: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    try:
        driver.get(page.as_uri())
        assert driver.title == "spfde-bench leaderboard"
        table = driver.find_element(By.CSS_SELECTOR, "table.board")

        def column(name: str) -> list[str]:
            heads = [th.text.strip(" \u25b2\u25bc") for th in table.find_elements(By.TAG_NAME, "th")]
            i = heads.index(name)
            return [
                tr.find_elements(By.TAG_NAME, "td")[i].text for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")
            ]

        header = next(th for th in table.find_elements(By.TAG_NAME, "th") if th.text == "top-1 (%)")
        header.click()
        assert header.get_attribute("aria-sort") == "ascending"
        assert [float(v) for v in column("top-1 (%)")] == [71.0, 74.5]
        assert column("entry") == ["SET", "RigL"]
        header.click()
        assert header.get_attribute("aria-sort") == "descending"
        assert column("entry") == ["RigL", "SET"]
        links = [a.get_attribute("href") for a in table.find_elements(By.CSS_SELECTOR, "tbody a")]
        assert len(links) == 4 and all(link.startswith("file://") for link in links)
        assert driver.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        shot = tmp_path / "leaderboard.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
