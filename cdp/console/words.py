"""The console's words in English and Russian, and which a browser asks for."""

from typing import Final, Literal

Language = Literal["en", "ru"]
LANGUAGES: Final[tuple[Language, ...]] = ("en", "ru")
_BY_TAG: Final[dict[str, Language]] = {language: language for language in LANGUAGES}

# key: (English, Russian)
_WORDS: Final[dict[str, tuple[str, str]]] = {
    "console": ("cdp console", "Консоль cdp"),
    "skip": ("Skip to content", "Перейти к содержимому"),
    "nav": ("Sections", "Разделы"),
    "search": ("Search", "Поиск"),
    "teams": ("Teams", "Команды"),
    "handoffs": ("Handoffs", "Передачи"),
    "log": ("Log", "Журнал"),
    "operations": ("Operations", "Обслуживание"),
    "sign_in": ("Sign in", "Войти"),
    "sign_out": ("Sign out", "Выйти"),
    "token": ("Token", "Токен"),
    "token_hint": (
        "A read token to look, an admin token for operations (cdp token create).",
        "Токен чтения, чтобы смотреть; токен администратора для обслуживания (cdp token create).",
    ),
    "needs_https": (
        "This page came over plain HTTP: browsers keep the sign-in only over HTTPS. Open "
        'the console through the TLS proxy in front of cdp (docs/security.md, "Behind TLS").',
        "Страница пришла по HTTP без шифрования: браузеры сохраняют вход только по HTTPS. "
        "Откройте консоль через TLS-прокси перед cdp (docs/security.md, «Behind TLS»).",
    ),
    "wrong_token": ("This token is not valid.", "Этот токен недействителен."),
    "signed_out": (
        "Your token is no longer valid: sign in again.",
        "Токен больше не действует: войдите снова.",
    ),
    "open_store": (
        "This store is open: it has no tokens, so anyone on this machine may look.",
        "Хранилище открыто: токенов нет, смотреть может любой на этой машине.",
    ),
    "signed_in_as": ("Signed in as", "Вы вошли как"),
    "role_read": ("read", "чтение"),
    "role_admin": ("admin", "администратор"),
    "search_label": (
        "Phone, profile or chat uuid, or the start of a name (three letters at least)",
        "Телефон, uuid профиля или чата, или начало имени (от трёх букв)",
    ),
    "search_button": ("Find", "Найти"),
    "search_hint": (
        "A phone in any spelling (+7 999 123-45-67, 89991234567), a uuid, or the first "
        "letters of a customer's name.",
        "Телефон в любой записи (+7 999 123-45-67, 89991234567), uuid или первые буквы "
        "имени клиента.",
    ),
    "nothing_found": ("Nothing found for", "Ничего не найдено по запросу"),
    "found_profiles": ("Profiles", "Профили"),
    "found_chats": ("Chats", "Чаты"),
    "more_results": (
        "More match: make the search longer.",
        "Совпадений больше: уточните запрос.",
    ),
    "profile": ("Profile", "Профиль"),
    "chat": ("Chat", "Чат"),
    "merged_into": ("Merged into", "Объединён с"),
    "merged_note": (
        "This profile owns no chat any more: its chats now belong to",
        "У профиля больше нет чатов: они теперь принадлежат профилю",
    ),
    "more_chats": ("More chats", "Ещё чаты"),
    "platform": ("Messenger", "Мессенджер"),
    "name": ("Name", "Имя"),
    "phone": ("Phone", "Телефон"),
    "phones": ("Phones", "Телефоны"),
    "first_seen": ("First seen", "Впервые"),
    "last_seen": ("Last seen", "Последний раз"),
    "team": ("Team", "Команда"),
    "operator": ("Operator", "Оператор"),
    "operators": ("Operators", "Операторы"),
    "state": ("State", "Состояние"),
    "open": ("open", "открыта"),
    "idle": ("idle", "неактивна"),
    "none": ("none", "нет"),
    "session": ("Session", "Сессия"),
    "sessions": ("Sessions", "Сессии"),
    "latest_sessions": ("Latest sessions", "Последние сессии"),
    "opened": ("Opened", "Открыта"),
    "last_activity": ("Last activity", "Последняя активность"),
    "messages_in_out": ("Messages in / out", "Сообщений от клиента / операторов"),
    "no_sessions": ("No session yet.", "Сессий пока нет."),
    "open_chat": ("Open the chat", "Открыть чат"),
    "source": ("Source", "Источник"),
    "continued": ("continued", "продолжение"),
    "first_reply_after": ("First reply after", "Первый ответ через"),
    "no_reply_yet": ("No reply yet", "Ответа пока нет"),
    "handed_off": ("Handed off", "Передан"),
    "from_to": ("from {a} to {b}", "из «{a}» в «{b}»"),
    "customer": ("Customer", "Клиент"),
    "delivery_failed": ("Delivery failed", "Не доставлено"),
    "message_changed": ("Message changed", "Сообщение изменено"),
    "session_updated": ("Session updated", "Сессия обновлена"),
    "other_event": ("Event", "Событие"),
    "image": ("Image", "Изображение"),
    "document": ("Document", "Документ"),
    "no_text": ("(no text)", "(без текста)"),
    "too_long": ("cut short: the whole of it is in the log", "обрезано: целиком в журнале"),
    "n_more": (
        "{n} more character: the API's /events/{position} gives them all|{n} more characters: "
        "the API's /events/{position} gives them all",
        "ещё {n} символ: целиком их отдаёт /events/{position} в API|ещё {n} символа: целиком "
        "их отдаёт /events/{position} в API|ещё {n} символов: целиком их отдаёт "
        "/events/{position} в API",
    ),
    "load_more": ("Load more", "Показать ещё"),
    "scroll_hint": ("Wider than the screen: scroll sideways →", "Шире экрана: прокрутите вбок →"),
    "next_page": ("Next page", "Следующая страница"),
    "end_of_timeline": ("That is all.", "Это всё."),
    "since": ("From", "С"),
    "until": ("To (inclusive)", "По (включительно)"),
    "show": ("Show", "Показать"),
    "period": ("Period:", "Период:"),
    "from_day": ("from {day} on", "с {day}"),
    "up_to_day": ("up to {day}", "по {day}"),
    "whole_log": ("the whole log", "весь журнал"),
    "period_last_days": ("the last {n} days", "последние {n} дней"),
    "period_to_latest": (
        "the {n} days up to the team's latest activity",
        "{n} дней до последней активности команды",
    ),
    "show_recent": ("Show the last {n} days", "Показать последние {n} дней"),
    "all_teams": ("All teams", "Все команды"),
    "team_chats": ("Its chats, most recently active first", "Её чаты, сначала недавние"),
    "no_chats": ("No chat is with this team now.", "Сейчас у команды нет чатов."),
    "statistics": ("Statistics", "Статистика"),
    "sessions_opened": ("Sessions opened", "Открыто сессий"),
    "handoffs_in": ("Handed in", "Передано в команду"),
    "handoffs_out": ("Handed out", "Передано из команды"),
    "customer_messages": ("Customer messages", "Сообщений клиентов"),
    "operator_replies": ("Operator replies", "Ответов операторов"),
    "answered": ("Waits answered", "Ожиданий с ответом"),
    "median_wait": ("Median first response", "Медиана первого ответа"),
    "p90_wait": ("90% answered within", "90% ответов в пределах"),
    "unanswered": ("Waits unanswered", "Ожиданий без ответа"),
    "chart_title": ("First-response times", "Время первого ответа"),
    "n_waits": ("{n} wait|{n} waits", "{n} ожидание|{n} ожидания|{n} ожиданий"),
    "known_teams": ("Every team the events named", "Все команды из событий"),
    "audit_title": ("Handoff audit", "Журнал передач"),
    "download_csv": ("Download CSV", "Скачать CSV"),
    "csv_note": (
        "The CSV holds every handoff the filter selects, in the same columns.",
        "CSV содержит все передачи по этому фильтру, в тех же столбцах.",
    ),
    "at": ("When", "Когда"),
    "from_team": ("From team", "Из команды"),
    "to_team": ("To team", "В команду"),
    "no_handoffs": ("No handoff matches.", "Передач не найдено."),
    "event_type": ("Type", "Тип"),
    # Identifiers, named alike in both languages.
    "id": ("id", "id"),
    "uuid": ("uuid", "uuid"),
    "chat_uuid": ("Chat uuid", "uuid чата"),
    "profile_uuid": ("Profile uuid", "uuid профиля"),
    "after_position": ("After position", "После позиции"),
    "position": ("Position", "Позиция"),
    "occurred": ("Occurred", "Произошло"),
    "received": ("Received", "Получено"),
    "erased": ("personal data erased", "персональные данные удалены"),
    "unreadable": ("cannot be opened", "не открывается"),
    "no_events": ("No event matches.", "Событий не найдено."),
    "body": ("Body", "Тело"),
    "event": ("Event", "Событие"),
    "projections": ("Projections", "Проекции"),
    "status": ("Status", "Статус"),
    # A projection's status (cdp.projections.schemas.Projection.status).
    "status_live": ("live", "актуальна"),
    "status_stale": ("stale", "устарела"),
    "status_new": ("new", "не построена"),
    "status_rebuilding": ("rebuilding", "перестраивается"),
    # A build's state (cdp.projections.schemas.Build.state).
    "build_running": ("running", "идёт"),
    "build_done": ("done", "завершена"),
    "build_failed": ("failed", "не удалась"),
    "build_interrupted": ("interrupted", "прервана"),
    "lag": ("Lag", "Отставание"),
    "n_events": ("{n} event|{n} events", "{n} событие|{n} события|{n} событий"),
    "progress": ("Progress", "Ход"),
    "rebuild_all": ("Rebuild every projection", "Перестроить все проекции"),
    "rebuild": ("Rebuild", "Перестроить"),
    "rejected": ("Rejected deliveries", "Отклонённые доставки"),
    "reason": ("Reason", "Причина"),
    "size": ("Size", "Размер"),
    "no_rejected": ("None kept.", "Нет."),
    "sources": ("Sources", "Источники"),
    "created": ("Created", "Создан"),
    "signed": ("Signed", "С подписью"),
    "yes": ("yes", "да"),
    "no": ("no", "нет"),
    "no_sources": (
        "No source: webhooks need no secret.",
        "Источников нет: вебхукам секрет не нужен.",
    ),
    "error": ("Error", "Ошибка"),
    "back_to_search": ("Back to search", "К поиску"),
    "seconds_short": ("s", "с"),
    "minutes_short": ("min", "мин"),
    "hours_short": ("h", "ч"),
    "days_short": ("d", "д"),
    "time_zone": ("Times in", "Время:"),
    # Reports (docs/reports.md).
    "reports": ("Reports", "Отчёты"),
    "waiting_now": ("Waiting now", "Ждут ответа"),
    "trends": ("Trends", "Динамика"),
    "heatmap": ("Heat map", "Тепловая карта"),
    "leaderboard": ("Leaderboard", "Операторы команды"),
    "breaches": ("Breaches", "Нарушения"),
    "find_customer": ("Find a customer", "Найти клиента"),
    "metric": ("Metric", "Показатель"),
    "metric_sessions_opened": ("Sessions opened", "Открыто сессий"),
    "metric_customer_messages": ("Customer messages", "Сообщения клиентов"),
    "metric_operator_replies": ("Operator replies", "Ответы операторов"),
    "metric_handoffs_in": ("Handoffs in", "Передачи в команду"),
    "metric_handoffs_out": ("Handoffs out", "Передачи из команды"),
    "metric_first_response": ("First response", "Первый ответ"),
    "metric_reply_time": ("Reply time", "Время ответа"),
    "metric_session_duration": ("Session duration", "Длительность сессии"),
    "group": ("By", "Шаг"),
    "group_hour": ("hour", "час"),
    "group_day": ("day", "день"),
    "group_week": ("week", "неделя"),
    "group_month": ("month", "месяц"),
    "all_sources": ("All sources", "Все источники"),
    "all_platforms": ("All messengers", "Все мессенджеры"),
    "operator_uuid": ("Operator uuid", "uuid оператора"),
    "scope": ("Counted for", "Для кого считать"),
    "scope_hint": (
        "One at most: a team, an operator, a source or a messenger; none for the whole store.",
        "Не больше одного: команда, оператор, источник или мессенджер; ничего — всё хранилище.",
    ),
    "compare": ("Compare with the period before", "Сравнить с предыдущим периодом"),
    "business_hours": ("Working time only", "Только рабочее время"),
    "business_hours_hint": (
        "Waits (first response, reply time) count only working hours.",
        "Ожидания (первый ответ, время ответа) считаются только в рабочие часы.",
    ),
    "default_period": (
        "No days chosen: the last {n} days, today included.",
        "Дни не выбраны: последние {n} дней, включая сегодня.",
    ),
    "this_period": ("This period", "Этот период"),
    "period_before": ("The period before", "Предыдущий период"),
    "median": ("Median", "Медиана"),
    "p90": ("90% within", "90% в пределах"),
    "counted": ("Counted", "Учтено"),
    "count": ("Count", "Количество"),
    "whole_period": ("Whole period", "Весь период"),
    "unit": ("Period", "Период"),
    "chart_by": ("{metric} by {group}", "{metric}, шаг: {group}"),
    "chart_desc_count": (
        "{period}: {total} in all; the most in one {group}: {most}.",
        "{period}: всего {total}; больше всего за один шаг ({group}): {most}.",
    ),
    "chart_desc_time": (
        "{period}: {n} counted, median {median}, 90% within {p90}.",
        "{period}: учтено {n}, медиана {median}, 90% в пределах {p90}.",
    ),
    "chart_desc_before": ("The period before:", "Предыдущий период:"),
    "chart_desc_table": ("Every point is in the table below.", "Все точки — в таблице ниже."),
    "legend_current": ("this period", "этот период"),
    "legend_median": ("median, this period", "медиана, этот период"),
    "legend_p90": ("90% within, this period", "90% в пределах, этот период"),
    "legend_previous": ("the period before", "предыдущий период"),
    "legend_previous_median": ("median, the period before", "медиана, предыдущий период"),
    "points_table": ("The chart's points", "Точки графика"),
    "refused": ("This report cannot be drawn as asked", "Такой отчёт построить нельзя"),
    "refused_hours_not_set": (
        "Working hours are not set, so waits cannot be counted in working time. An admin "
        "sets them from the command line (cdp reports hours set, see docs/operations.md) or "
        "with PUT /reports/business-hours; until then, untick “Working time only”.",
        "Рабочие часы не заданы, поэтому ожидания нельзя считать в рабочем времени. "
        "Администратор задаёт их командой cdp reports hours set (см. docs/operations.md) "
        "или запросом PUT /reports/business-hours; а пока снимите флажок «Только рабочее "
        "время».",
    ),
    "refused_hours_counts": (
        "Working time applies to waits only: choose First response or Reply time, or untick "
        "“Working time only”.",
        "Рабочее время применяется только к ожиданиям: выберите «Первый ответ» или «Время "
        "ответа» или снимите флажок «Только рабочее время».",
    ),
    "refused_operator": (
        "Webhooks name an operator only in replies, so by operator only Operator replies, "
        "First response and Reply time are counted: choose one of them, or a team instead.",
        "Вебхуки называют оператора только в ответах, поэтому по оператору считаются только "
        "«Ответы операторов», «Первый ответ» и «Время ответа»: выберите один из них или "
        "команду вместо оператора.",
    ),
    "refused_scope": (
        "Choose one of a team, an operator, a source or a messenger, not several.",
        "Выберите что-то одно: команду, оператора, источник или мессенджер.",
    ),
    "refused_points": (
        "Too many points for one chart: group by a longer step or choose fewer days.",
        "Слишком много точек для одного графика: выберите шаг крупнее или меньше дней.",
    ),
    "refused_other": ("The server said:", "Ответ сервера:"),
    "heatmap_caption": (
        "{metric} by weekday and local hour, {period}",
        "{metric} по дням недели и часам, {period}",
    ),
    "hour": ("Hour", "Час"),
    "weekday": ("Weekday", "День недели"),
    "total": ("Total", "Всего"),
    "heatmap_scale": (
        "Darker cells hold more; each cell shows its number.",
        "Чем темнее ячейка, тем больше; число — в каждой ячейке.",
    ),
    "weekday_monday": ("Monday", "Понедельник"),
    "weekday_tuesday": ("Tuesday", "Вторник"),
    "weekday_wednesday": ("Wednesday", "Среда"),
    "weekday_thursday": ("Thursday", "Четверг"),
    "weekday_friday": ("Friday", "Пятница"),
    "weekday_saturday": ("Saturday", "Суббота"),
    "weekday_sunday": ("Sunday", "Воскресенье"),
    "choose_team": (
        "Choose a team to see its operators side by side.",
        "Выберите команду, чтобы сравнить её операторов.",
    ),
    "replies": ("Replies", "Ответы"),
    "first_response_median": ("First response, median", "Первый ответ, медиана"),
    "reply_time_median": ("Reply time, median", "Время ответа, медиана"),
    "late_replies": ("Late replies", "Ответы с опозданием"),
    "no_operators": (
        "No operator replied in this team's chats in this period.",
        "За этот период операторы не отвечали в чатах команды.",
    ),
    "leaderboard_note": (
        "Sessions and replies while the chat was the team's; medians of the waits each "
        "operator's reply ended; late replies against the team's targets.",
        "Сессии и ответы, пока чат был у команды; медианы ожиданий, которые закрыл ответ "
        "оператора; ответы позже нормы команды.",
    ),
    "kind": ("Kind", "Вид"),
    "target": ("Target", "Норма"),
    "kind_first_reply": ("first reply", "первый ответ"),
    "kind_next_reply": ("next reply", "следующий ответ"),
    "began": ("Began", "Начало"),
    "waited": ("Waited", "Ждал"),
    "still_open": ("Still open", "Ещё ждёт"),
    "late_reply_by": ("Late reply by", "Ответил с опозданием"),
    "no_breaches": ("No wait passed its target in this period.", "За этот период нарушений нет."),
    "no_targets": (
        "No team has reply targets yet: an admin sets them with cdp reports targets set (see "
        "docs/operations.md) or PUT /reports/targets/{team_id}.",
        "Нормы ответа ещё не заданы ни одной команде: администратор задаёт их командой cdp "
        "reports targets set (см. docs/operations.md) или запросом PUT "
        "/reports/targets/{team_id}.",
    ),
    "breaches_shown": (
        "{n} of {total} here, a page at a time; the CSV holds every one.",
        "Здесь {n} из {total}, по страницам; в CSV — все.",
    ),
    "breaches_csv_note": (
        "The CSV holds the same rows as GET /reports/breaches?format=csv.",
        "CSV содержит те же строки, что GET /reports/breaches?format=csv.",
    ),
    "trend_csv_note": (
        "The CSV holds the same points as GET /reports/trends?format=csv.",
        "CSV содержит те же точки, что GET /reports/trends?format=csv.",
    ),
    "waiting_since": ("Since", "С"),
    "waiting_for": ("Waiting", "Ждёт"),
    "state_open": ("within target", "в пределах нормы"),
    "state_at_risk": ("at risk", "под угрозой"),
    "state_open_breached": ("breached", "нарушено"),
    "state_none": ("no target", "нормы нет"),
    "team_counts": (
        "{waiting} waiting · {at_risk} at risk · {breached} breached",
        "ждут: {waiting} · под угрозой: {at_risk} · нарушено: {breached}",
    ),
    "no_team": ("No team", "Без команды"),
    "nobody_waiting": ("Nobody is waiting for a reply.", "Никто не ждёт ответа."),
    "waiting_note": (
        "Every chat whose customer waits for a reply now, longest first. The list follows "
        "each webhook and the passing of time by itself.",
        "Все чаты, где клиент сейчас ждёт ответа, дольше всех ждущие — первыми. Список "
        "обновляется сам: с каждым вебхуком и со временем.",
    ),
    "as_of": ("As of", "По состоянию на"),
}


class Words:
    """The console's words in one language: `words("key")`, or `words("key", a=...)`."""

    def __init__(self, language: Language) -> None:
        self.language = language
        self._index = LANGUAGES.index(language)

    def __call__(self, key: str, **values: object) -> str:
        text = _WORDS[key][self._index]
        return text.format(**values) if values else text

    def count(self, key: str, n: int, written: str, **values: object) -> str:
        """`n` of something, in the plural form its language gives `n` (`written` is how `n`
        is written): "1 wait", "2 waits"; "1 ожидание", "2 ожидания", "5 ожиданий"."""
        forms = _WORDS[key][self._index].split("|")
        if self.language == "en":
            form = forms[0 if n == 1 else 1]
        elif n % 10 == 1 and n % 100 != 11:
            form = forms[0]
        elif 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            form = forms[1]
        else:
            form = forms[2]
        return form.format(n=written, **values)


def language(accept_language: str | None) -> Language:
    """The language a browser prefers among ours (RFC 9110 Accept-Language, with q
    weights); English when it names neither."""
    best: Language = "en"
    best_weight = 0.0
    for part in (accept_language or "")[:1000].split(",")[:50]:
        tag, _, parameters = part.partition(";")
        primary = tag.strip().lower().split("-")[0]
        weight = 1.0
        name, _, value = parameters.partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value)
            except ValueError:
                continue
        found = _BY_TAG.get(primary)
        if found is not None and 0 < weight <= 1 and weight > best_weight:
            best, best_weight = found, weight
    return best
