"""The built-in calibration corpus: the texts int8/fp16 calibration runs through a model to see activations.

Calibration only needs inputs that look like what an embedding model meets in retrieval: short search queries,
ordinary sentences, long passages, source code, and number-heavy text (tables, prices, dates, units, IDs), in
many languages and scripts, on many topics (science, cooking, law, sport, finance, travel, medicine, software,
history ...). Every text here was written for embcc; none is taken from a data set.

The corpus is held out from the verify probe set (`embcc.probes.PROBES`): no text here equals or contains a
probe text and no probe sentence is reused, so `embcc verify` measures parity on inputs that calibration never
saw. Everything is deterministic: long passages are built by joining sentences of one language in fixed,
arithmetic orders (no randomness), so the corpus, and therefore the calibration cache key, never changes
between runs.

`KINDS` groups the texts by kind; `CORPUS` is the concatenation of the `KINDS` values in the order
query, sentence, passage, code, numbers (no text appears twice). `LANGUAGES` lists the ISO 639-1 codes of
the natural languages present.
"""

from __future__ import annotations

from math import gcd

LANGUAGES: tuple[str, ...] = (
    "en",
    "de",
    "fr",
    "es",
    "pt",
    "it",
    "ru",
    "zh",
    "ja",
    "ko",
    "ar",
    "hi",
    "tr",
    "pl",
    "el",
)

# ------------------------------------------------------------------------------------------------------------
# Search queries: 3-12 words (or the CJK equivalent), the way people type them into a search box.
# ------------------------------------------------------------------------------------------------------------
_QUERIES: tuple[str, ...] = (
    # English
    "how long to boil an egg for a runny yolk",
    "symptoms of vitamin b12 deficiency in adults",
    "tenant rights when landlord keeps deposit",
    "python asyncio gather vs wait difference",
    "best time of year to visit iceland",
    "how does compound interest work",
    "world cup 1986 final score",
    "rust borrow checker lifetime error explained",
    "gluten free banana bread recipe",
    "what causes northern lights",
    "cheapest way from airport to city centre rome",
    "is ibuprofen safe during pregnancy",
    "postgres index not used on like query",
    "history of the printing press in europe",
    "how to file taxes as a freelancer",
    "marathon training plan for beginners 16 weeks",
    "difference between a will and a living trust",
    "kubernetes pod stuck in crashloopbackoff",
    "black hole event horizon simple explanation",
    "used electric car battery degradation",
    "train tickets paris to amsterdam",
    "how to remove red wine stain from carpet",
    "ETF vs mutual fund fees comparison",
    "medieval castle siege techniques",
    "how many calories in a croissant",
    "statute of limitations for breach of contract uk",
    "jwt token expired error node",
    "why is the sky red at sunset",
    "tonkotsu ramen broth from scratch",
    "Champions League quarter final draw",
    "mortgage overpayment calculator",
    "signs of concussion after a fall",
    "tourist visa requirements for japan",
    "git undo last commit keep changes",
    # German
    "Rezept Apfelstrudel mit Blätterteig",
    "Mietminderung bei Schimmel in der Wohnung",
    "Bahnstreik aktuelle Verbindungen Frankfurt",
    "Ursachen für Bluthochdruck bei jungen Menschen",
    "Steuererklärung Homeoffice Pauschale absetzen",
    "Wanderwege Sächsische Schweiz für Familien",
    # French
    "meilleur itinéraire vélo le long de la Loire",
    "comment contester une amende de stationnement",
    "symptômes de la maladie de Lyme",
    "recette de bœuf bourguignon traditionnelle",
    "résultats du Tour de France étape d'hier",
    "taux du livret A cette année",
    # Spanish
    "cómo renovar el pasaporte en el consulado",
    "receta de tortilla de patatas jugosa",
    "horarios del metro de Barcelona en fiestas",
    "qué es la inflación subyacente",
    "síntomas de deshidratación en niños",
    "mejores playas de la costa de Almería",
    # Portuguese
    "como declarar imposto de renda pela primeira vez",
    "receita de moqueca de peixe baiana",
    "quanto custa o metrô em São Paulo",
    "sintomas de dengue e quando procurar o médico",
    # Italian
    "orari dei musei vaticani la domenica",
    "ricetta della carbonara originale senza panna",
    "come funziona il bonus ristrutturazioni",
    "classifica serie A ultima giornata",
    # Russian
    "как приготовить сырники на сковороде",
    "расписание поездов Москва Санкт-Петербург",
    "симптомы аллергии на пыльцу весной",
    "как оформить налоговый вычет за лечение",
    "история строительства Петербурга кратко",
    # Chinese
    "北京到西安高铁票价",
    "糖尿病早期症状有哪些",
    "如何申请劳动仲裁",
    "红烧排骨的家常做法",
    "Python 多线程和多进程的区别",
    "房贷提前还款划算吗",
    # Japanese
    "大阪 お好み焼き 有名店",
    "確定申告 医療費控除 やり方",
    "インフルエンザ 予防接種 時期",
    "JavaScript 非同期処理 わかりやすく",
    "富士山 登山 初心者 装備",
    # Korean
    "부산 해운대 맛집 추천",
    "전세 사기 예방 방법",
    "감기 빨리 낫는 법",
    "파이썬 리스트 정렬 방법",
    "제주도 렌터카 가격 비교",
    # Arabic
    "أفضل وقت لزيارة مدينة البتراء",
    "طريقة عمل الكبسة باللحم",
    "أعراض نقص الحديد عند النساء",
    "كيفية تجديد جواز السفر إلكترونيا",
    # Hindi
    "दिल्ली से जयपुर ट्रेन का किराया",
    "घर पर पनीर बनाने की विधि",
    "डेंगू बुखार के लक्षण और इलाज",
    "आयकर रिटर्न ऑनलाइन कैसे भरें",
    # Turkish
    "İstanbul'da görülmesi gereken müzeler",
    "evde kolay baklava tarifi",
    "kira sözleşmesi feshi nasıl yapılır",
    # Polish
    "jak wyrobić paszport dla dziecka",
    "przepis na żurek z białą kiełbasą",
    "pogoda Zakopane prognoza długoterminowa",
    # Greek
    "καλύτερες παραλίες στη Μήλο",
    "συνταγή για σπανακόπιτα με σπιτικό φύλλο",
    "πώς να κάνω αίτηση για δίπλωμα οδήγησης",
    # mixed language / mixed script
    "iPhone 15 Akku tauschen Kosten",
    "Tokyo から Kyoto 新幹線 料金",
    "Galaxy S23 화면 깨짐 수리비",
)

# ------------------------------------------------------------------------------------------------------------
# Sentences: one or two ordinary sentences each, plus punctuation-heavy, mixed-script and odd-whitespace ones.
# ------------------------------------------------------------------------------------------------------------
_SENTENCES: tuple[str, ...] = (
    # English
    "The heat pump in the basement cut our winter gas bill roughly in half.",
    "She argued that the statute of limitations had expired before the claim was filed.",
    "Add the lemon zest only at the end, otherwise it turns bitter in the hot butter.",
    "Our nightly build failed because a transitive dependency dropped support for older compilers.",
    "The goalkeeper saved two penalties and was named player of the match.",
    "Dinosaurs are more closely related to modern birds than to crocodiles or lizards.",
    "Take this medication with food and avoid alcohol for the duration of the treatment.",
    "The hostel near the old harbour has shared kitchens and lockers but no air conditioning.",
    "Bond yields fell sharply after the employment figures came in weaker than forecast.",
    "The Silk Road was not a single route but a shifting network of caravan trails and sea lanes.",
    "Mitochondria produce most of the chemical energy a cell needs, in the form of ATP.",
    "If the printer reports a paper jam but nothing is stuck, switch it off and clean the rollers.",
    "Volunteers planted four hundred saplings along the riverbank to slow erosion.",
    "The contract may be terminated by either party with thirty days' written notice.",
    (
        "Quantum computers are expected to break some public-key schemes, which is why post-quantum "
        "algorithms are being standardised."
    ),
    "My grandmother's stew recipe calls for barley, smoked ham hock and a whole bunch of parsley.",
    "Long-haul flights increase the risk of deep vein thrombosis, so walk the aisle every couple of hours.",
    "The library's rare-book room can be visited by appointment on Tuesdays and Thursdays.",
    "Her thesis compared irrigation practices in medieval Persia and Moorish Spain.",
    "Shares of the chipmaker rallied after it raised its full-year revenue guidance.",
    # German
    "Der Handwerker kommt erst nächste Woche, weil ihm ein Ersatzteil für die Heizung fehlt.",
    (
        "Laut Mietvertrag ist die Haltung von Kleintieren erlaubt, für Hunde braucht man jedoch eine "
        "Genehmigung."
    ),
    "Die Spätzle werden direkt vom Brett ins kochende Salzwasser geschabt.",
    "Nach der Operation durfte die Patientin das Knie sechs Wochen lang nur teilweise belasten.",
    "Die Fusion der beiden Versicherer muss noch von der Kartellbehörde genehmigt werden.",
    "Im Wattenmeer kann man bei Ebbe mit einem Führer bis zu den vorgelagerten Inseln laufen.",
    "Der Fehler trat nur auf, wenn zwei Threads gleichzeitig in dieselbe Datei schrieben.",
    "Die Weimarer Republik scheiterte an wirtschaftlicher Not und politischer Zersplitterung.",
    # French
    "Le plombier a remplacé le chauffe-eau, mais la facture dépasse largement le devis initial.",
    "La Cour de cassation a cassé l'arrêt pour défaut de base légale.",
    "Faites revenir les échalotes dans le beurre avant d'ajouter le vin blanc.",
    "Le navigateur refuse le certificat parce que la chaîne de confiance est incomplète.",
    "Les grandes marées attirent chaque année des milliers de pêcheurs à pied sur la côte bretonne.",
    "Ce médicament peut provoquer une somnolence ; évitez de conduire après la prise.",
    "L'équipe de rugby a remporté le match malgré deux cartons jaunes en première mi-temps.",
    "L'inflation a ralenti pour le troisième mois consécutif selon l'institut de statistique.",
    # Spanish
    "El fontanero dijo que la tubería llevaba años perdiendo agua detrás de la pared.",
    "La prescripción del delito impide que el caso llegue a juicio.",
    "Sofríe la cebolla a fuego lento hasta que quede transparente y dulce.",
    "El servidor devolvía un error 502 cada vez que la carga superaba las mil peticiones por segundo.",
    "Los flamencos pasan el invierno en las lagunas saladas del sur de la península.",
    "La fisioterapia después de la lesión de rodilla duró casi cuatro meses.",
    "La ciclista colombiana ganó la etapa reina con más de un minuto de ventaja.",
    "El Imperio inca construyó una red de caminos de más de treinta mil kilómetros.",
    # Portuguese
    "A obra do metrô atrasou porque encontraram vestígios arqueológicos no subsolo.",
    "O inquilino tem direito à devolução da caução se o imóvel for entregue em bom estado.",
    "Refogue o alho no azeite antes de juntar o arroz e a água fervente.",
    "O atacante marcou de bicicleta e o estádio inteiro se levantou.",
    "O aplicativo trava sempre que tento anexar um arquivo maior que vinte megabytes.",
    # Italian
    "L'idraulico arriverà domani mattina per sostituire la caldaia guasta.",
    "Il giudice ha respinto il ricorso perché presentato oltre i termini.",
    "Lascia riposare l'impasto della pizza almeno ventiquattro ore in frigorifero.",
    "La squadra ha pareggiato al novantesimo con un calcio di punizione perfetto.",
    "Il satellite misurerà l'umidità del suolo per migliorare le previsioni agricole.",
    # Russian
    "Сантехник пообещал прийти завтра утром и заменить протекающий кран.",
    "Арбитражный суд отказал истцу во взыскании неустойки.",
    "Тесто для пельменей должно полежать под плёнкой не меньше получаса.",
    "Сервер падал каждую ночь из-за переполнения диска логами.",
    "Вратарь отразил три буллита и принёс команде победу.",
    "Северное сияние лучше всего видно в ясные морозные ночи вдали от городских огней.",
    "Реформы Петра Первого изменили армию, флот и государственное управление.",
    # Chinese
    "物业说电梯下周一开始维修，预计需要三天。",
    "根据劳动合同法，用人单位应当按月足额支付劳动报酬。",
    "包饺子的时候，馅里加一点花椒水可以去腥提鲜。",
    "服务器内存占用持续升高，初步怀疑是连接池没有正确释放。",
    "这位短跑运动员在百米决赛中跑出了个人最好成绩。",
    "黄河流经九个省区，最终注入渤海。",
    "春运期间火车票非常紧张，最好提前十五天购买。",
    # Japanese
    "管理会社によると、来週の火曜日に水道管の点検があるそうです。",
    "契約書に署名する前に、解約条件を必ず確認してください。",
    "味噌は沸騰させると風味が飛ぶので、火を止めてから溶き入れます。",
    "デプロイ後にエラー率が急上昇したため、すぐにロールバックしました。",
    "マラソンの前日は炭水化物を多めにとるとよいと言われています。",
    "江戸の人口は、十八世紀初めにはすでに百万人を超えていたと推定されている。",
    "この薬は食後に一日三回、水またはぬるま湯で服用してください。",
    # Korean
    "관리사무소에서 다음 주 화요일에 단수가 예정되어 있다고 안내했다.",
    "계약서에 서명하기 전에 해지 조건을 꼼꼼히 읽어 보세요.",
    "된장찌개는 멸치 육수로 끓이면 훨씬 감칠맛이 난다.",
    "배포 직후 오류율이 급증해서 이전 버전으로 롤백했다.",
    "이 약은 식후 30분에 하루 세 번 복용하세요.",
    "조선 시대의 한양은 사대문과 성곽으로 둘러싸인 계획도시였다.",
    # Arabic
    "قال السبّاك إن تسرب المياه سببه أنبوب قديم داخل الجدار.",
    "يحق للمستأجر استرداد مبلغ التأمين عند تسليم العقار بحالة جيدة.",
    "يُضاف الكمون والكزبرة إلى البصل المقلي قبل إضافة الأرز.",
    "توقف الخادم عن الاستجابة بسبب امتلاء القرص بملفات السجل.",
    "سجّل اللاعب ثلاثة أهداف في الشوط الثاني وقاد فريقه إلى الفوز.",
    "ألّف ابن سينا كتاب القانون في الطب الذي دُرّس في أوروبا قرونًا.",
    # Hindi
    "प्लंबर ने बताया कि दीवार के अंदर की पुरानी पाइप से पानी रिस रहा है।",
    "किरायेदार को मकान खाली करने से एक महीने पहले सूचना देनी होगी।",
    "तड़के में जीरा और हींग डालने के बाद ही टमाटर डालें।",
    "सर्वर बार-बार बंद हो रहा था क्योंकि डिस्क लॉग फ़ाइलों से भर गई थी।",
    "कप्तान ने शानदार शतक लगाकर टीम को जीत दिलाई।",
    "इस दवा को खाने के बाद दिन में दो बार लें।",
    # Turkish
    "Tesisatçı, duvarın içindeki eski borudan su sızdığını söyledi.",
    "Kiracı, evi boşaltmadan en az bir ay önce ev sahibine haber vermelidir.",
    "Sunucu, günlük dosyaları diski doldurduğu için her gece çöküyordu.",
    "Osmanlı mimarisinin en önemli isimlerinden biri Mimar Sinan'dır.",
    # Polish
    "Hydraulik powiedział, że woda cieknie ze starej rury ukrytej w ścianie.",
    "Najemca powinien wypowiedzieć umowę na piśmie z miesięcznym wyprzedzeniem.",
    "Serwer przestawał odpowiadać, bo dysk zapełniał się plikami logów.",
    "Bramkarz obronił rzut karny w doliczonym czasie gry.",
    # Greek
    "Ο υδραυλικός είπε ότι το νερό διαρρέει από έναν παλιό σωλήνα μέσα στον τοίχο.",
    "Ο ενοικιαστής πρέπει να ειδοποιήσει τον ιδιοκτήτη τουλάχιστον ένα μήνα νωρίτερα.",
    "Ο διακομιστής έπεφτε κάθε βράδυ επειδή ο δίσκος γέμιζε με αρχεία καταγραφής.",
    "Η μάχη του Μαραθώνα δόθηκε το 490 π.Χ. ανάμεσα σε Αθηναίους και Πέρσες.",
    # punctuation-heavy
    "Wait... what?! The build passed locally -- but CI says: 'FAILED (errors=3)'?!",
    "«Non, non et non !» s'écria-t-elle ; puis, plus bas : « peut-être… demain ? »",
    "„Das war’s“, sagte er – und ging.",
    "(((nested (parentheses) are [sometimes] {hard} to <read>)))",
    "*** WARNING *** Disk usage above 90% on /var — rotate logs NOW!!!",
    "¡¿Cómo que no hay café?! — preguntó, incrédulo.",
    "Q: Is it safe?  A: Yes -- mostly; see §4.2(b) & footnote [17].",
    "emoji check 🍕🍝🥐 → food; ⚽🏀🎾 → sport; ✈️🚆🚲 → travel",
    "Ünïversität, façade, smörgåsbord, crème brûlée, jalapeño, Øresund, Łódź",
    # mixed script
    "Der Termin mit 田中さん wurde auf Freitag verschoben, bitte Raum B-204 buchen.",
    "Meeting notes: 佐藤 (Tokyo), Müller (Berlin), Петров (Moscow), García (Madrid) — all agreed.",
    "我们用 PyTorch 训练了 BERT-base 模型，batch size 设为 32，learning rate 为 2e-5。",
    "このAPIは JSON を返しますが、エラー時は HTTP 500 と plain text になります。",
    "서버 로그에 'OutOfMemoryError' 가 계속 찍혀서 heap size 를 4GB 로 늘렸다.",
    "تم تحديث الإصدار v2.3.1 من مكتبة NumPy لإصلاح خطأ في الدالة np.linalg.solve.",
    "मेरा ऑर्डर ID #IN-88213 है, delivery कब तक होगी?",
    # repeated whitespace and newlines
    "Line one\nLine two\n\nLine four, after a blank line",
    "Column A\tColumn B\tColumn C\nvalue 1\tvalue 2\tvalue 3",
    "   indented   text  with    irregular     spacing   ",
    "Dear team,\n\n  please find the minutes below.\n\n\nBest regards,\n  Ana",
    "TODO:\n  - renew the domain\n  - rotate the API keys\n\n  - book the venue   ",
)

# ------------------------------------------------------------------------------------------------------------
# Sentence pools for long passages, one per language. A passage joins sentences of one pool in a fixed
# arithmetic order until it is long enough (words, or characters for zh/ja/ko), so passages differ in order,
# length and paragraph breaks.
# ------------------------------------------------------------------------------------------------------------
_POOLS: dict[str, tuple[str, ...]] = {
    "en": (
        "Sourdough starters are living cultures of wild yeast and lactic acid bacteria that need regular "
        "feeding with flour and water.",
        "The central bank raised its benchmark rate by a quarter point, citing persistent inflation in "
        "services and housing.",
        "Glaciers in the Alps have lost more than half of their volume since the middle of the nineteenth "
        "century.",
        "A well-written commit message explains why a change was made, not only which lines were touched.",
        "During the marathon, runners pass through six districts and cross the river twice before reaching "
        "the stadium.",
        "Tenants should read the lease carefully, because clauses about deposits and early termination "
        "differ from city to city.",
        "The museum's new wing displays bronze tools, clay tablets and jewellery recovered from a Bronze Age "
        "settlement.",
        "Physicians recommend that adults get at least 150 minutes of moderate aerobic activity every week.",
        "When the cache is cold, the first request can take several seconds while the index is loaded from "
        "disk.",
        "Photosynthesis converts sunlight, water and carbon dioxide into glucose and oxygen inside the "
        "chloroplasts of plant cells.",
        "The ferry to the island leaves every two hours in summer, but only twice a day during the winter "
        "months.",
        "Index funds spread risk across hundreds of companies and usually charge lower fees than actively "
        "managed portfolios.",
        "The treaty ending the war was signed in a small railway carriage parked in a forest clearing.",
        "Roasting the spices in a dry pan for a minute releases their oils and deepens the flavour of the "
        "curry.",
        "Search engines rank documents by combining keyword statistics with signals about freshness and "
        "authority.",
        "The referee reviewed the footage for almost three minutes before awarding a penalty in stoppage "
        "time.",
        "Under the new regulation, companies must report a data breach to the supervisory authority within "
        "seventy-two hours.",
        "Astronomers detected water vapour in the atmosphere of an exoplanet orbiting a small red dwarf "
        "star.",
        "Hikers are advised to carry a paper map, extra water and a headlamp, since the trail has no mobile "
        "coverage.",
        "Vaccines train the immune system to recognise a pathogen without causing the disease itself.",
    ),
    "de": (
        "Die Stadtwerke haben angekündigt, die Strompreise zum ersten Januar um durchschnittlich acht "
        "Prozent zu senken.",
        "Nach dem Regen am Wochenende führen die Flüsse in Süddeutschland wieder deutlich mehr Wasser als im "
        "Sommer.",
        "Für einen guten Hefeteig sollten Milch und Butter nur lauwarm sein, damit die Hefe nicht abstirbt.",
        "Das Bundesverfassungsgericht prüft, ob die neue Regelung mit dem Grundrecht auf informationelle "
        "Selbstbestimmung vereinbar ist.",
        "Im Finale setzte sich die Mannschaft nach Verlängerung und Elfmeterschießen knapp gegen den "
        "Titelverteidiger durch.",
        "Wer eine Wohnung kündigen möchte, muss in der Regel eine Frist von drei Monaten einhalten.",
        "Die Burg wurde im zwölften Jahrhundert errichtet und im Dreißigjährigen Krieg mehrfach belagert und "
        "zerstört.",
        "Ärztinnen und Ärzte raten bei anhaltendem Fieber über drei Tage dazu, eine Praxis aufzusuchen.",
        "Der neue Compiler erzeugt kleineren Maschinencode, braucht für große Projekte aber spürbar mehr "
        "Arbeitsspeicher.",
        "Zwischen Hamburg und Berlin verkehren die schnellsten Züge inzwischen in knapp unter zwei Stunden.",
        "Mikroplastik gelangt über Kläranlagen, Reifenabrieb und Kosmetik in Flüsse, Seen und schließlich "
        "ins Meer.",
        "Die Aktie verlor nach der Gewinnwarnung zeitweise mehr als zwölf Prozent ihres Wertes.",
        "Im Herbst lohnt sich eine Wanderung durch die Weinberge an der Mosel, wenn die Lese in vollem Gange "
        "ist.",
        "Die Forscherinnen konnten zeigen, dass das Enzym bei niedrigen Temperaturen deutlich aktiver ist "
        "als erwartet.",
        "Viele Gemeinden setzen auf Bürgerbusse, die von ehrenamtlichen Fahrerinnen und Fahrern gesteuert "
        "werden.",
        "Ein Backup ist erst dann etwas wert, wenn man die Wiederherstellung auch tatsächlich getestet hat.",
        "Die Ausstellung zeigt Fotografien aus den Zwanzigerjahren, die das Leben in den Berliner "
        "Hinterhöfen dokumentieren.",
        "Beim Kauf eines gebrauchten Fahrrads sollte man Rahmennummer, Bremsen und Kette genau überprüfen.",
    ),
    "fr": (
        "La mairie a lancé une consultation publique sur l'aménagement des berges et la création de pistes "
        "cyclables.",
        "Pour réussir une pâte brisée, il faut travailler le beurre froid du bout des doigts et ne pas trop "
        "pétrir.",
        "Le tribunal a estimé que le licenciement était dépourvu de cause réelle et sérieuse et a accordé "
        "une indemnité.",
        "Les chercheurs ont observé que certaines abeilles reconnaissent des formes simples après quelques "
        "essais seulement.",
        "Le TGV relie désormais Paris à Marseille en un peu plus de trois heures, contre sept heures il y a "
        "quarante ans.",
        "Le patient souffrait d'une douleur thoracique aiguë et a été transféré en cardiologie pour une "
        "coronarographie.",
        "Dans la vieille ville, les ruelles pavées mènent à une place où se tient le marché tous les samedis "
        "matin.",
        "La Bourse de Paris a terminé la séance en légère hausse, portée par les valeurs du luxe et de "
        "l'énergie.",
        "Le cyclisme sur piste exige une explosivité remarquable et une maîtrise parfaite des trajectoires "
        "dans les virages.",
        "Les manuscrits médiévaux étaient souvent copiés dans des monastères, à la lumière des bougies, "
        "pendant des mois.",
        "Une fuite de mémoire apparaît lorsqu'un programme réserve de la mémoire sans jamais la libérer.",
        "Les vendanges commencent généralement à la fin du mois d'août dans le sud et plus tard en "
        "Bourgogne.",
        "Le contrat prévoit une période d'essai de deux mois, renouvelable une fois avec l'accord écrit des "
        "deux parties.",
        "Les volcans d'Auvergne, éteints depuis des milliers d'années, forment aujourd'hui un parc naturel "
        "très fréquenté.",
        "Il est conseillé de boire régulièrement pendant les fortes chaleurs, même sans ressentir la soif.",
        "La médiathèque municipale prête désormais des outils, des instruments de musique et des jeux de "
        "société.",
        "L'équipe technique a migré la base de données vers un nouveau serveur pendant la nuit, sans "
        "interruption de service.",
    ),
    "es": (
        "El ayuntamiento ampliará el horario de las bibliotecas públicas durante la época de exámenes "
        "universitarios.",
        "Para una buena paella, el arroz no debe removerse una vez que se ha añadido el caldo.",
        "La sentencia obliga a la empresa a readmitir a los trabajadores despedidos y a pagar los salarios "
        "pendientes.",
        "El equipo remontó un partido que perdía por dos goles y ganó en el último minuto con un cabezazo.",
        "Los astrónomos del observatorio de Canarias descubrieron una galaxia enana muy cerca de la Vía "
        "Láctea.",
        "Se recomienda vacunarse contra la gripe cada otoño, especialmente a las personas mayores de sesenta "
        "y cinco años.",
        "El precio de la vivienda en alquiler ha subido más de un diez por ciento en las grandes ciudades "
        "este año.",
        "Las ruinas mayas de la península de Yucatán atraen cada año a millones de visitantes de todo el "
        "mundo.",
        "Antes de desplegar una nueva versión, conviene ejecutar todas las pruebas automáticas en un entorno "
        "aislado.",
        "El tren nocturno sale de Madrid a las once y llega a Lisboa poco después del amanecer.",
        "La sequía prolongada ha reducido las reservas de los embalses a menos de un tercio de su capacidad.",
        "El banco ofrece una hipoteca a tipo fijo durante los primeros diez años y variable a partir de "
        "entonces.",
        "Los tomates maduros, el pan del día anterior y un buen aceite de oliva son la base del salmorejo.",
        "La Constitución reconoce el derecho de todos a disfrutar de una vivienda digna y adecuada.",
        "Los incendios forestales del verano arrasaron miles de hectáreas de pinar en el interior de la "
        "provincia.",
        "El médico le pidió un análisis de sangre para comprobar los niveles de hierro y vitamina D.",
        "La reforma del código civil simplifica los trámites de herencia cuando no existe testamento.",
    ),
    "pt": (
        "O mercado municipal abre às seis da manhã e é famoso pelas bancas de peixe fresco e fruta tropical.",
        "Para fazer pão de queijo, mistura-se polvilho azedo, ovos, leite, óleo e queijo meia cura ralado.",
        "O tribunal decidiu que a operadora deve indenizar os clientes prejudicados pela interrupção do "
        "serviço.",
        "A seleção venceu a partida com dois gols no segundo tempo e garantiu a vaga nas semifinais.",
        "A floresta amazônica abriga cerca de dez por cento de todas as espécies conhecidas do planeta.",
        "O paciente foi orientado a reduzir o consumo de sal e a medir a pressão arterial todas as manhãs.",
        "Os bondes elétricos de Lisboa sobem ladeiras íngremes e passam por alguns dos bairros mais antigos "
        "da cidade.",
        "A taxa básica de juros permaneceu estável, e os analistas esperam cortes apenas no próximo "
        "semestre.",
        "A equipe de engenharia reescreveu o serviço de pagamentos para reduzir a latência nos horários de "
        "pico.",
        "As grandes navegações dos séculos quinze e dezesseis mudaram profundamente o comércio entre os "
        "continentes.",
        "Quem viaja para o interior deve levar protetor solar, repelente e bastante água, pois as distâncias "
        "são longas.",
        "O novo contrato de aluguel prevê reajuste anual pelo índice de preços ao consumidor.",
        "Os pesquisadores sequenciaram o genoma de uma planta resistente à seca encontrada no cerrado.",
        "O festival de música reúne artistas de vários países durante três dias à beira do rio.",
        "Antes de instalar a atualização, faça uma cópia de segurança dos seus arquivos mais importantes.",
    ),
    "it": (
        "Il consiglio comunale ha approvato il nuovo piano per la mobilità sostenibile nel centro storico.",
        "Per un buon risotto il riso va tostato a secco e poi bagnato con il brodo caldo un mestolo alla "
        "volta.",
        "La Corte di cassazione ha chiarito i limiti del diritto di recesso nei contratti stipulati a "
        "distanza.",
        "Il ciclista ha conquistato la tappa di montagna staccando tutti gli avversari sull'ultima salita.",
        "Gli scavi di Pompei continuano a restituire affreschi, oggetti quotidiani e iscrizioni di grande "
        "valore.",
        "Il medico ha consigliato riposo, molti liquidi e un antinfiammatorio in caso di febbre alta.",
        "Il treno regionale per Firenze è stato soppresso a causa di un guasto alla linea elettrica.",
        "Lo spread tra titoli di Stato italiani e tedeschi si è ridotto dopo l'annuncio della banca "
        "centrale.",
        "Il nuovo modulo del software permette di esportare i report in formato CSV e PDF con un solo clic.",
        "Le Dolomiti, patrimonio dell'UNESCO, offrono sentieri adatti sia agli escursionisti esperti sia "
        "alle famiglie.",
        "Durante il Rinascimento, Firenze divenne un centro di arte, banca e scienza senza eguali in Europa.",
        "I ricercatori hanno sviluppato un sensore economico per misurare la qualità dell'aria nelle scuole.",
        "La vendemmia di quest'anno è stata anticipata di due settimane a causa del caldo estivo.",
        "Prima di firmare il contratto d'affitto, è bene verificare le spese condominiali e lo stato "
        "dell'impianto.",
        "Il museo resterà aperto fino a mezzanotte ogni venerdì durante i mesi estivi.",
    ),
    "ru": (
        "Городская администрация объявила о капитальном ремонте трёх станций метро в течение следующего "
        "года.",
        "Для настоящего борща свёклу тушат отдельно, добавляя немного уксуса, чтобы сохранить яркий цвет.",
        "Суд признал договор недействительным, поскольку одна из сторон не имела полномочий на его "
        "подписание.",
        "Сборная одержала уверенную победу и вышла в полуфинал чемпионата мира по хоккею.",
        "Учёные обнаружили в вечной мерзлоте микроорганизмы, которые сохраняли жизнеспособность тысячи лет.",
        "Врач рекомендовал пациенту пройти обследование сердца и ограничить употребление соли.",
        "Транссибирская магистраль соединяет Москву и Владивосток и является самой длинной железной дорогой "
        "в мире.",
        "Центральный банк сохранил ключевую ставку, отметив замедление инфляции в последние месяцы.",
        "Разработчики выпустили обновление, которое исправляет уязвимость в модуле авторизации.",
        "Байкал содержит около двадцати процентов мировых запасов пресной поверхностной воды.",
        "В девятнадцатом веке русская литература подарила миру романы Толстого, Достоевского и Тургенева.",
        "Перед поездкой в горы стоит проверить прогноз погоды и взять тёплую одежду даже летом.",
        "Новый закон обязывает владельцев сайтов хранить персональные данные пользователей на территории "
        "страны.",
        "Исследователи создали аккумулятор, который заряжается за десять минут и выдерживает тысячи циклов.",
        "Библиотека университета открыла круглосуточный читальный зал для студентов во время сессии.",
        "Осенью в лесах Подмосковья много грибов, но собирать стоит только хорошо знакомые виды.",
        "Эрмитаж хранит более трёх миллионов экспонатов, и увидеть их все за один визит невозможно.",
        "Фермеры жалуются, что затяжные дожди задержали уборку пшеницы почти на три недели.",
        "Программист нашёл ошибку в обработке часовых поясов, из-за которой отчёты формировались с "
        "опозданием.",
        "На соревнованиях по лыжным гонкам спортсменка завоевала две золотые медали и одну бронзовую.",
    ),
    "zh": (
        "市政府宣布将在明年春天之前完成老城区供水管网的全面改造。",
        "做红烧肉时，先把五花肉焯水，再用冰糖炒出糖色，味道会更加浓郁。",
        "法院审理后认为，该合同条款明显加重了消费者的责任，因此无效。",
        "这支球队在最后十秒投中三分球，以一分的优势赢得了总决赛。",
        "研究人员在深海热泉附近发现了一种能够分解塑料的新型细菌。",
        "医生建议高血压患者每天监测血压，并减少盐和酒精的摄入。",
        "高铁开通以后，从上海到北京只需要四个多小时，出行变得非常方便。",
        "央行下调了存款准备金率，以释放更多流动性支持实体经济。",
        "开发团队将旧的单体应用拆分成多个微服务，部署速度明显提高。",
        "长城始建于春秋战国时期，后经历代修筑，总长度超过两万公里。",
        "去云南旅游最好避开节假日，丽江和大理的古城在旺季游客非常多。",
        "新修订的个人信息保护法规定，企业收集数据前必须取得用户的明确同意。",
        "科学家利用望远镜观测到两颗中子星合并时产生的引力波信号。",
        "秋天是吃大闸蟹的季节，很多人专门去阳澄湖附近品尝。",
        "这家公司的季度营收同比增长了百分之十八，超出了市场预期。",
        "图书馆推出了电子书借阅服务，读者在手机上就可以免费阅读。",
        "敦煌莫高窟保存了从四世纪到十四世纪的大量壁画和彩塑。",
        "马拉松比赛当天，部分道路将实行交通管制，请市民提前安排出行。",
    ),
    "ja": (
        "市は来年度から、すべての公立小学校で給食費を無償化する方針を発表した。",
        "肉じゃがを作るときは、じゃがいもが煮崩れしないように弱火でゆっくり煮るのがコツです。",
        "裁判所は、会社側が十分な説明をせずに配置転換を命じたことは違法だと判断した。",
        "日本代表は延長戦の末に強豪を破り、初めて準決勝への進出を決めた。",
        "研究チームは、iPS細胞を使って網膜の一部を再生することに成功したと発表した。",
        "医師は、睡眠不足が続くと免疫力が下がり、風邪をひきやすくなると指摘している。",
        "新幹線を使えば、東京から大阪までおよそ二時間半で移動することができます。",
        "日経平均株価は、半導体関連株の上昇に支えられて三日続けて値上がりした。",
        "このライブラリは非同期処理に対応しており、大量のリクエストを効率よく処理できる。",
        "京都には千年以上の歴史を持つ寺社が数多く残り、毎年多くの観光客が訪れる。",
        "台風が接近しているため、週末の飛行機や鉄道の運行に大きな影響が出るおそれがある。",
        "改正された法律では、フリーランスへの報酬の支払い期限が明確に定められた。",
        "すばる望遠鏡の観測により、百三十億光年以上離れた銀河の姿がとらえられた。",
        "春になると各地で桜が咲き、公園ではお花見を楽しむ人々でにぎわいます。",
        "図書館の自習室は、試験期間中に限り夜十時まで利用できるようになった。",
        "北海道の冬は厳しいが、雪まつりの時期には国内外から大勢の観光客が集まる。",
        "古いサーバーからデータを移行する前に、必ずバックアップを取っておいてください。",
    ),
    "ko": (
        "서울시는 내년부터 심야 버스 노선을 확대해 늦은 시간 귀가하는 시민들의 불편을 줄이기로 했다.",
        "김치찌개는 잘 익은 김치와 돼지고기를 먼저 볶은 뒤 물을 부어 끓이면 더 깊은 맛이 난다.",
        "법원은 회사가 정당한 이유 없이 직원을 해고했다며 복직과 임금 지급을 명령했다.",
        "대표팀은 후반 추가 시간에 터진 결승골로 강팀을 꺾고 조 1위로 16강에 올랐다.",
        "연구진은 인공지능을 이용해 새로운 항생제 후보 물질을 찾아냈다고 밝혔다.",
        "의사들은 하루 30분 이상 걷기만 해도 심혈관 질환 위험을 크게 낮출 수 있다고 조언한다.",
        "KTX를 타면 서울에서 부산까지 약 두 시간 반 만에 도착할 수 있다.",
        "한국은행은 물가 상승 압력이 여전하다며 기준금리를 동결했다.",
        "개발팀은 데이터베이스 쿼리를 최적화해 페이지 로딩 시간을 절반으로 줄였다.",
        "경주는 신라 천 년의 수도로, 불국사와 석굴암 같은 문화유산이 많이 남아 있다.",
        "제주도는 사계절 내내 관광객이 많지만 특히 유채꽃이 피는 봄에 가장 아름답다.",
        "개정된 개인정보 보호법은 기업이 수집한 정보를 목적 외로 사용하는 것을 엄격히 금지한다.",
        "천문학자들은 태양계 밖에서 지구와 크기가 비슷한 행성을 새로 발견했다.",
        "가을이 되면 설악산 단풍을 보려는 등산객들로 주말마다 산길이 붐빈다.",
        "도서관은 시험 기간 동안 열람실을 밤 열두 시까지 연장 운영한다고 공지했다.",
        "전세 계약을 하기 전에는 등기부등본을 꼭 확인해 집에 담보가 있는지 살펴봐야 한다.",
    ),
    "ar": (
        "أعلنت البلدية عن خطة لتوسيع شبكة الحافلات العامة لتشمل الأحياء الجديدة في أطراف المدينة.",
        "لتحضير الحمص بالطحينة يُنقع الحمص ليلة كاملة ثم يُسلق حتى يصبح طريًا جدًا.",
        "قضت المحكمة بإلزام الشركة بتعويض العمال عن ساعات العمل الإضافية غير المدفوعة.",
        "فاز المنتخب في المباراة النهائية بهدف وحيد سُجّل في الدقائق الأخيرة من الوقت الأصلي.",
        "اكتشف علماء الآثار مقبرة قديمة تحتوي على تماثيل وأوانٍ فخارية يعود تاريخها إلى آلاف السنين.",
        "ينصح الأطباء بشرب كميات كافية من الماء وتجنب التعرض لأشعة الشمس في ساعات الظهيرة.",
        "يستغرق القطار السريع بين المدينتين أقل من ساعتين بعد أن كانت الرحلة تستغرق نصف يوم.",
        "رفع البنك المركزي سعر الفائدة للحد من ارتفاع الأسعار والحفاظ على استقرار العملة المحلية.",
        "أطلق فريق التطوير نسخة جديدة من التطبيق تدعم الوضع الليلي وتحسّن سرعة التحميل.",
        "كانت بغداد في العصر العباسي مركزًا للعلم والترجمة، وفيها بيت الحكمة الشهير.",
        "يفضّل كثير من السياح زيارة الصحراء في فصل الشتاء حين تكون درجات الحرارة معتدلة.",
        "يشترط القانون الجديد الحصول على موافقة صريحة من المستخدم قبل جمع بياناته الشخصية.",
        "توصل الباحثون إلى طريقة جديدة لتحلية مياه البحر باستخدام الطاقة الشمسية بتكلفة منخفضة.",
        "تزدحم الأسواق الشعبية في شهر رمضان بالمتسوقين الذين يشترون التمور والحلويات.",
        "افتتحت المكتبة الوطنية قاعة جديدة للمخطوطات النادرة مفتوحة أمام الباحثين.",
        "ينبغي مراجعة عقد الإيجار بعناية قبل التوقيع، خصوصًا البنود المتعلقة بالتأمين والصيانة.",
        "سجّلت محطات الرصد أعلى درجة حرارة منذ بدء القياسات قبل أكثر من مئة عام.",
        "يعتمد المزارعون في الواحات على أنظمة ري تقليدية تنقل المياه الجوفية عبر قنوات طويلة.",
    ),
    "hi": (
        "नगर निगम ने घोषणा की है कि अगले महीने से शहर के सभी पार्कों में मुफ्त वाई-फाई उपलब्ध होगा।",
        "दाल मखनी बनाने के लिए उड़द की दाल को रात भर भिगोकर धीमी आँच पर कई घंटे पकाया जाता है।",
        "अदालत ने कहा कि बिना सूचना के किसी कर्मचारी को नौकरी से निकालना कानून के खिलाफ है।",
        "भारतीय टीम ने आखिरी ओवर में छक्का लगाकर रोमांचक मुकाबला जीत लिया।",
        "वैज्ञानिकों ने चंद्रमा के दक्षिणी ध्रुव के पास पानी की बर्फ के नए प्रमाण खोजे हैं।",
        "डॉक्टरों के अनुसार रोज़ाना आधा घंटा तेज़ चलने से मधुमेह का खतरा काफी कम हो जाता है।",
        "नई ट्रेन से दोनों शहरों के बीच की यात्रा अब केवल पाँच घंटे में पूरी हो जाती है।",
        "रिज़र्व बैंक ने महँगाई पर नियंत्रण के लिए रेपो दर में कोई बदलाव नहीं किया।",
        "डेवलपर्स ने ऐप का नया संस्करण जारी किया है जो कम इंटरनेट स्पीड पर भी ठीक से चलता है।",
        "ताजमहल का निर्माण सत्रहवीं शताब्दी में शाहजहाँ ने अपनी पत्नी मुमताज़ की याद में करवाया था।",
        "मानसून के मौसम में पहाड़ी इलाकों की यात्रा करते समय भूस्खलन की चेतावनियों पर ध्यान देना चाहिए।",
        "नए उपभोक्ता संरक्षण कानून के तहत ग्राहक ऑनलाइन भी शिकायत दर्ज करा सकते हैं।",
        "किसानों ने इस साल कम पानी में उगने वाली धान की नई किस्म की खेती शुरू की है।",
        "दीवाली के दौरान बाज़ारों में मिठाइयों, दीयों और रंगोली के सामान की भारी बिक्री होती है।",
        "विश्वविद्यालय के पुस्तकालय ने परीक्षा के दिनों में चौबीस घंटे खुले रहने का फैसला किया है।",
        "किराये का समझौता करने से पहले मकान मालिक से बिजली और पानी के बिल के बारे में साफ बात कर लें।",
        "गंगा नदी हिमालय के गंगोत्री ग्लेशियर से निकलकर बंगाल की खाड़ी में गिरती है।",
    ),
    "tr": (
        "Belediye, şehir merkezindeki tarihi çarşının restorasyonunun önümüzdeki yaz tamamlanacağını "
        "açıkladı.",
        "İyi bir mercimek çorbası için soğanı tereyağında kavurup sonuna biraz pul biber eklemek gerekir.",
        "Mahkeme, kira artışının yasal sınırı aştığına karar vererek kiracıyı haklı buldu.",
        "Milli takım, uzatma dakikalarında attığı golle grubunu lider olarak tamamladı.",
        "Araştırmacılar, Karadeniz'in derin sularında oksijensiz ortamda yaşayan yeni bakteri türleri "
        "keşfetti.",
        "Doktorlar, kış aylarında D vitamini eksikliğine karşı güneşli günlerde yürüyüş yapılmasını "
        "öneriyor.",
        "Hızlı tren sayesinde Ankara ile İstanbul arasındaki yolculuk yaklaşık dört buçuk saate indi.",
        "Merkez Bankası, enflasyondaki düşüşün kalıcı olup olmadığını görmek için faizi sabit tuttu.",
        "Yazılım ekibi, uygulamanın çökmesine neden olan bellek hatasını yeni sürümde düzeltti.",
        "Kapadokya'daki peri bacaları, milyonlarca yıl önce volkanik külün aşınmasıyla oluştu.",
        "Efes antik kenti, Roma döneminden kalma kütüphanesi ve tiyatrosuyla her yıl binlerce ziyaretçi "
        "çekiyor.",
        "Yeni yönetmelik, internet sitelerinin çerez kullanımı için kullanıcıdan açık onay almasını zorunlu "
        "kılıyor.",
        "Sonbaharda Karadeniz yaylalarında sis, yağmur ve güneş aynı gün içinde birbirini izleyebilir.",
        "Üniversite kütüphanesi, sınav haftası boyunca gece yarısına kadar açık kalacak.",
        "Borsa İstanbul, bankacılık hisselerindeki yükselişle günü rekor seviyede kapattı.",
        "Kiralık ev tutmadan önce tapu kaydını ve aidat borcu olup olmadığını kontrol etmek gerekir.",
        "Ege kıyısındaki zeytinlikler, yüzyıllardır aynı aileler tarafından kuşaktan kuşağa aktarılarak "
        "işleniyor.",
        "Hastanede randevu almak için artık telefon yerine mobil uygulama veya internet sitesi "
        "kullanılabiliyor.",
        "Gökbilimciler, Doğu Anadolu'daki yeni teleskopla uzak galaksilerin ilk görüntülerini yayımladı.",
        "Futbol kulübü, altyapıdan yetişen genç oyuncularla uzun vadeli sözleşmeler imzaladı.",
    ),
    "pl": (
        "Urząd miasta zapowiedział budowę nowej linii tramwajowej, która połączy dworzec z osiedlami na "
        "północy.",
        "Żeby pierogi się nie rozkleiły, brzegi ciasta trzeba dokładnie skleić i gotować je na małym ogniu.",
        "Sąd uznał, że pracodawca naruszył przepisy, zwalniając pracownika bez podania przyczyny.",
        "Reprezentacja wygrała mecz w ostatniej minucie i awansowała do ćwierćfinału mistrzostw.",
        "Naukowcy z Krakowa opracowali nowy materiał, który skutecznie pochłania dwutlenek węgla z "
        "powietrza.",
        "Lekarze przypominają, że regularne badania profilaktyczne pozwalają wcześnie wykryć wiele chorób.",
        "Pociąg ekspresowy z Warszawy do Gdańska jedzie obecnie niecałe trzy godziny.",
        "Narodowy bank pozostawił stopy procentowe bez zmian, mimo wyższej niż oczekiwano inflacji.",
        "Zespół programistów przepisał moduł płatności, aby obsługiwał więcej transakcji jednocześnie.",
        "Puszcza Białowieska jest jednym z ostatnich fragmentów pierwotnego lasu nizinnego w Europie.",
        "Zamek w Malborku, zbudowany przez Krzyżaków, jest największą ceglaną budowlą obronną na świecie.",
        "Nowe przepisy nakładają na sklepy internetowe obowiązek jasnego informowania o kosztach dostawy.",
        "Wiosną w Tatrach wciąż leży śnieg, dlatego na szlaki warto zabrać raki i kijki.",
        "Biblioteka uniwersytecka wydłużyła godziny otwarcia czytelni w czasie sesji egzaminacyjnej.",
        "Przed podpisaniem umowy najmu warto sprawdzić stan liczników i spisać protokół zdawczo-odbiorczy.",
        "Festiwal filmowy w Gdyni co roku przyciąga twórców, krytyków i tysiące widzów z całego kraju.",
        "Rolnicy obawiają się, że długotrwała susza znacząco obniży tegoroczne plony zbóż.",
        "Giełda w Warszawie zakończyła dzień spadkami, głównie z powodu przeceny spółek energetycznych.",
    ),
    "el": (
        "Ο δήμος ανακοίνωσε την ανάπλαση της παραλιακής ζώνης με νέους ποδηλατόδρομους και χώρους πρασίνου.",
        "Για έναν καλό μουσακά, οι μελιτζάνες πρέπει πρώτα να ψηθούν στον φούρνο ώστε να μην απορροφούν πολύ "
        "λάδι.",
        "Το δικαστήριο έκρινε ότι η απόλυση του εργαζομένου ήταν άκυρη και διέταξε την επαναπρόσληψή του.",
        "Η ομάδα κέρδισε τον τελικό στην παράταση και κατέκτησε το κύπελλο για πρώτη φορά στην ιστορία της.",
        "Οι αρχαιολόγοι ανακάλυψαν στην Κρήτη ένα μινωικό ανάκτορο με εντυπωσιακές τοιχογραφίες.",
        "Οι γιατροί συνιστούν τακτική άσκηση και μεσογειακή διατροφή για την πρόληψη των καρδιοπαθειών.",
        "Το πλοίο για τις Κυκλάδες αναχωρεί από τον Πειραιά νωρίς το πρωί και φτάνει στη Νάξο το μεσημέρι.",
        "Η Ευρωπαϊκή Κεντρική Τράπεζα διατήρησε αμετάβλητα τα επιτόκια για τρίτη συνεχόμενη συνεδρίαση.",
        "Η ομάδα ανάπτυξης μετέφερε την εφαρμογή σε νέα υποδομή νέφους χωρίς διακοπή της υπηρεσίας.",
        "Ο Παρθενώνας χτίστηκε τον πέμπτο αιώνα π.Χ. και αφιερώθηκε στη θεά Αθηνά.",
        "Το καλοκαίρι τα νησιά γεμίζουν τουρίστες, γι' αυτό καλό είναι να κλείνετε δωμάτιο από νωρίς.",
        "Ο νέος νόμος υποχρεώνει τις επιχειρήσεις να ενημερώνουν τους πελάτες για κάθε παραβίαση δεδομένων.",
        "Ερευνητές μελετούν πώς τα λιβάδια ποσειδωνίας προστατεύουν τις ακτές από τη διάβρωση.",
        "Ο ελαιόκαρπος συλλέγεται συνήθως από τον Νοέμβριο έως τον Ιανουάριο, ανάλογα με την περιοχή.",
        "Η βιβλιοθήκη του πανεπιστημίου θα παραμένει ανοιχτή έως τα μεσάνυχτα κατά την εξεταστική περίοδο.",
        "Πριν υπογράψετε μισθωτήριο, ελέγξτε προσεκτικά τους όρους για την εγγύηση και τις επισκευές.",
        "Οι σεισμολόγοι καταγράφουν καθημερινά δεκάδες μικρές δονήσεις στο Αιγαίο, οι περισσότερες "
        "ανεπαίσθητες.",
    ),
}

# how many passages each pool yields
_PASSAGE_COUNTS: dict[str, int] = {
    "en": 6,
    "de": 4,
    "fr": 4,
    "es": 4,
    "pt": 3,
    "it": 3,
    "ru": 3,
    "zh": 4,
    "ja": 4,
    "ko": 3,
    "ar": 3,
    "hi": 3,
    "tr": 2,
    "pl": 3,
    "el": 3,
}
_CHAR_COUNTED = ("zh", "ja", "ko")  # length measured in characters, not whitespace-separated words
_NO_SPACE = ("zh", "ja")  # sentences joined without a space


def _passages(lang: str, count: int) -> list[str]:
    """`count` passages from one pool: each walks the pool from its own start with its own stride (coprime
    with the pool size, so no sentence repeats) until it reaches its length target; odd ones have paragraphs.
    """
    pool = _POOLS[lang]
    n = len(pool)
    by_chars = lang in _CHAR_COUNTED
    strides = [a for a in (1, 3, 7, 5, 11, 13) if gcd(a, n) == 1]
    out: list[str] = []
    for j in range(count):
        start, stride = (5 * j) % n, strides[j % len(strides)]
        target = 330 + 60 * j if by_chars else 165 + 30 * j
        parts: list[str] = []
        size = 0
        for k in range(n):
            if parts:
                if j % 2 and k % 4 == 0:
                    parts.append("\n" if by_chars else "\n\n")
                else:
                    parts.append("" if lang in _NO_SPACE else " ")
            sentence = pool[(start + k * stride) % n]
            parts.append(sentence)
            size += len(sentence) if by_chars else len(sentence.split())
            if size >= target:
                break
        out.append("".join(parts))
    return out


# Long passages written in one piece (document-like: a runbook, a contract clause, an essay).
_LONG_FORM: tuple[str, ...] = (
    (
        "Runbook: recovering the product search cluster after a failed reindex.\n\n"
        "Step 1. Acknowledge the alert and announce in the incident channel that search results may be "
        "stale. "
        "Do not restart nodes yet; a rolling restart during a half-finished reindex can leave shards "
        "unassigned. "
        "Step 2. Check cluster health and note which indices are red or yellow, how many shards are "
        "relocating, and whether disk watermarks have been crossed on any data node. "
        "Step 3. If the new index is incomplete, switch the read alias back to the previous index. This is "
        "instant and safe, because the old index is kept for seven days after every successful reindex. "
        "Step 4. Free disk space by deleting the partial index, then confirm that the remaining shards "
        "become green. "
        "Step 5. Find the cause before retrying. In past incidents the reindex job failed because a mapping "
        "change turned a keyword field into text, because a single document exceeded the request size "
        "limit, or because the job ran at the same time as the nightly snapshot and ran out of memory. "
        "Step 6. Retry the reindex with a smaller batch size during off-peak hours, watch the error rate, "
        "and only move the alias once document counts match within half a percent.\n\n"
        "Afterwards, write a short timeline, link the dashboards you used, and file follow-up tickets for "
        "anything that slowed the recovery down."
    ),
    (
        "Limitation of liability. To the extent permitted by applicable law, neither party shall be liable "
        "to the other for any indirect, incidental, special or consequential damages, including loss of "
        "profits, revenue, data or goodwill, arising out of or in connection with this agreement, even if it "
        "has been advised of the possibility of such damages. Each party's total liability for all claims in "
        "any twelve-month period shall not exceed the fees paid or payable by the customer under this "
        "agreement during that period. These limitations do not apply to breaches of confidentiality, to a "
        "party's indemnification obligations, or to damages caused by gross negligence, wilful misconduct or "
        "fraud. Nothing in this agreement limits liability for death or personal injury caused by "
        "negligence. Termination. Either party may terminate this agreement for convenience on ninety days' "
        "written notice. Either party may terminate immediately if the other party materially breaches the "
        "agreement and fails to cure the breach within thirty days of receiving a notice describing it in "
        "reasonable detail. Upon termination, the customer shall pay all undisputed fees accrued up to the "
        "effective date, and the provider shall, at the customer's choice, return or delete customer data "
        "within sixty days, except where retention is required by law. Sections on confidentiality, "
        "limitation of liability and governing law survive termination."
    ),
    (
        "How sailors learned to measure longitude. For centuries, a ship's navigator could find latitude "
        "fairly easily by measuring the height of the sun at noon or of the pole star at night, but "
        "longitude was a different matter. Because the Earth turns fifteen degrees every hour, knowing "
        "longitude is equivalent to knowing the time at a reference meridian while also knowing local time "
        "on board. Local time could be read from the sun; the difficulty was carrying the reference time "
        "across an ocean. Pendulum clocks, the best timekeepers of the seventeenth century, were useless on "
        "a rolling deck, and changes in temperature and humidity made ordinary springs run fast or slow. "
        "After several costly shipwrecks, governments offered large prizes for a practical solution. "
        "Astronomers favoured the lunar distance method, which compared the angle between the moon and "
        "chosen stars with tables computed in advance, while a self-taught carpenter spent decades building "
        "a series of marine chronometers. His fourth instrument, hardly larger than a pocket watch, lost "
        "only a few seconds during a voyage to the Caribbean. Both methods were used side by side for many "
        "years: chronometers were expensive, and the lunar tables served as a check. By the middle of the "
        "nineteenth century, affordable chronometers had become standard equipment, and the problem that "
        "had cost so many lives was effectively solved."
    ),
)

# ------------------------------------------------------------------------------------------------------------
# Source code: Python, JavaScript/TypeScript, SQL, Rust, shell, and a few others.
# ------------------------------------------------------------------------------------------------------------
_CODE: tuple[str, ...] = (
    # Python
    (
        "def chunked(items, size):\n"
        '    """Yield successive slices of at most `size` elements."""\n'
        "    for start in range(0, len(items), size):\n"
        "        yield items[start : start + size]\n"
    ),
    (
        "from dataclasses import dataclass, field\n\n\n"
        "@dataclass\n"
        "class Order:\n"
        "    order_id: str\n"
        "    lines: list[tuple[str, int, float]] = field(default_factory=list)\n\n"
        "    def total(self) -> float:\n"
        "        return sum(qty * price for _, qty, price in self.lines)\n"
    ),
    (
        "import numpy as np\n\n\n"
        "def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:\n"
        "    a = a / np.linalg.norm(a, axis=-1, keepdims=True)\n"
        "    b = b / np.linalg.norm(b, axis=-1, keepdims=True)\n"
        "    return a @ b.T\n"
    ),
    (
        "import time\n\n\n"
        "def with_retry(fn, attempts=5, base_delay=0.5):\n"
        "    for attempt in range(attempts):\n"
        "        try:\n"
        "            return fn()\n"
        "        except (TimeoutError, ConnectionError) as exc:\n"
        "            if attempt == attempts - 1:\n"
        "                raise\n"
        "            delay = base_delay * 2**attempt\n"
        '            print(f"retry {attempt + 1} in {delay:.1f}s: {exc}")\n'
        "            time.sleep(delay)\n"
    ),
    (
        "from collections import Counter\n"
        "from pathlib import Path\n\n"
        "counts = Counter()\n"
        'for path in Path("notes").rglob("*.md"):\n'
        '    counts.update(path.read_text(encoding="utf-8").lower().split())\n'
        "print(counts.most_common(10))\n"
    ),
    (
        "class MeanPool(torch.nn.Module):\n"
        "    def forward(self, hidden, mask):\n"
        "        mask = mask.unsqueeze(-1).to(hidden.dtype)\n"
        "        summed = (hidden * mask).sum(dim=1)\n"
        "        return summed / mask.sum(dim=1).clamp(min=1e-9)\n"
    ),
    (
        'if __name__ == "__main__":\n'
        '    parser = argparse.ArgumentParser(description="Convert CSV to Parquet")\n'
        '    parser.add_argument("src")\n'
        '    parser.add_argument("--compression", default="zstd", choices=["zstd", "snappy"])\n'
        "    args = parser.parse_args()\n"
        "    convert(args.src, compression=args.compression)\n"
    ),
    (
        "# 计算两个日期之间相差的天数\n"
        "from datetime import date\n\n"
        "print((date(2025, 5, 1) - date(2024, 12, 24)).days)  # 128\n"
    ),
    # JavaScript / TypeScript
    (
        "async function loadUser(id) {\n"
        "  const res = await fetch(`/api/users/${encodeURIComponent(id)}`);\n"
        "  if (!res.ok) throw new Error(`HTTP ${res.status}`);\n"
        "  return res.json();\n"
        "}\n"
    ),
    (
        "export function debounce(fn, ms = 250) {\n"
        "  let timer;\n"
        "  return (...args) => {\n"
        "    clearTimeout(timer);\n"
        "    timer = setTimeout(() => fn(...args), ms);\n"
        "  };\n"
        "}\n"
    ),
    (
        "function Cart({ items }) {\n"
        "  const total = items.reduce((sum, it) => sum + it.qty * it.price, 0);\n"
        "  return (\n"
        '    <aside className="cart">\n'
        "      <h2>Your basket ({items.length})</h2>\n"
        "      <p>Total: {total.toFixed(2)} EUR</p>\n"
        "    </aside>\n"
        "  );\n"
        "}\n"
    ),
    (
        'app.get("/health", (req, res) => {\n'
        '  res.json({ status: "ok", uptime: process.uptime(), version: pkg.version });\n'
        "});\n"
    ),
    (
        "interface SearchHit {\n"
        "  id: string;\n"
        "  score: number;\n"
        "  snippet?: string;\n"
        "}\n\n"
        "const top = (hits: SearchHit[], k = 5): SearchHit[] =>\n"
        "  [...hits].sort((a, b) => b.score - a.score).slice(0, k);\n"
    ),
    # SQL
    (
        "CREATE TABLE invoices (\n"
        "    id BIGSERIAL PRIMARY KEY,\n"
        "    customer_id BIGINT NOT NULL REFERENCES customers(id),\n"
        "    issued_on DATE NOT NULL DEFAULT CURRENT_DATE,\n"
        "    amount_cents INTEGER NOT NULL CHECK (amount_cents >= 0)\n"
        ");"
    ),
    (
        "SELECT c.country, COUNT(*) AS orders, SUM(o.total) AS revenue\n"
        "FROM orders o\n"
        "JOIN customers c ON c.id = o.customer_id\n"
        "WHERE o.created_at >= '2024-01-01'\n"
        "GROUP BY c.country\n"
        "HAVING COUNT(*) > 50\n"
        "ORDER BY revenue DESC;"
    ),
    (
        "SELECT athlete, event, result_s,\n"
        "       RANK() OVER (PARTITION BY event ORDER BY result_s) AS place\n"
        "FROM race_results\n"
        "WHERE season = 2023;"
    ),
    (
        "WITH RECURSIVE chain(id, manager_id, depth) AS (\n"
        "  SELECT id, manager_id, 0 FROM employees WHERE id = 42\n"
        "  UNION ALL\n"
        "  SELECT e.id, e.manager_id, c.depth + 1\n"
        "  FROM employees e JOIN chain c ON e.id = c.manager_id\n"
        ")\n"
        "SELECT * FROM chain;"
    ),
    (
        "UPDATE products SET stock = stock - o.qty\n"
        "FROM order_lines o\n"
        "WHERE o.product_id = products.id AND o.order_id = 1187;"
    ),
    # Rust
    (
        "use std::fs;\n"
        "use std::io;\n\n"
        "fn read_config(path: &str) -> io::Result<String> {\n"
        "    let text = fs::read_to_string(path)?;\n"
        "    Ok(text.trim().to_owned())\n"
        "}\n"
    ),
    (
        "struct Money {\n"
        "    cents: i64,\n"
        "    currency: &'static str,\n"
        "}\n\n"
        "impl std::fmt::Display for Money {\n"
        "    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {\n"
        '        write!(f, "{}.{:02} {}", self.cents / 100, self.cents % 100, self.currency)\n'
        "    }\n"
        "}\n"
    ),
    (
        "let squares: Vec<u64> = (1..=20).filter(|n| n % 2 == 0).map(|n| n * n).collect();\n"
        'println!("{:?}", squares);'
    ),
    (
        "enum Shape {\n"
        "    Circle(f64),\n"
        "    Rect(f64, f64),\n"
        "}\n\n"
        "fn area(s: &Shape) -> f64 {\n"
        "    match s {\n"
        "        Shape::Circle(r) => std::f64::consts::PI * r * r,\n"
        "        Shape::Rect(w, h) => w * h,\n"
        "    }\n"
        "}\n"
    ),
    # shell
    "find . -name '*.log' -mtime +14 -print0 | xargs -0 gzip -9",
    (
        "for host in web1 web2 web3; do\n"
        '  curl -fsS "https://$host.internal/healthz" > /dev/null || echo "$host DOWN"\n'
        "done"
    ),
    (
        "#!/usr/bin/env bash\n"
        "set -euo pipefail\n\n"
        'BACKUP_DIR="/srv/backups/$(date +%F)"\n'
        'mkdir -p "$BACKUP_DIR"\n'
        'pg_dump --format=custom shop > "$BACKUP_DIR/shop.dump"\n'
        'echo "backup written to $BACKUP_DIR"\n'
    ),
    (
        "git fetch origin && git rebase origin/main\n"
        "git log --oneline --graph -n 15\n"
        "git push --force-with-lease\n"
    ),
    "du -sh /var/lib/docker/* 2>/dev/null | sort -rh | head -n 5",
    # Go, C, YAML, JSON, HTML, Dockerfile
    (
        "func sum(nums []int) int {\n"
        "\ttotal := 0\n"
        "\tfor _, n := range nums {\n"
        "\t\ttotal += n\n"
        "\t}\n"
        "\treturn total\n"
        "}\n"
    ),
    (
        "size_t count_spaces(const char *s) {\n"
        "    size_t n = 0;\n"
        "    while (*s) {\n"
        "        if (*s++ == ' ') n++;\n"
        "    }\n"
        "    return n;\n"
        "}\n"
    ),
    (
        "services:\n"
        "  api:\n"
        "    image: ghcr.io/example/api:1.4.2\n"
        "    ports:\n"
        '      - "8080:8080"\n'
        "    environment:\n"
        "      LOG_LEVEL: info\n"
        "      DB_URL: postgres://app@db:5432/app\n"
    ),
    (
        '{"id": "sku-10442", "name": "Trail running shoe", "sizes": [40, 41, 42.5, 44], '
        '"price": {"amount": 129.95, "currency": "EUR"}, "in_stock": true}'
    ),
    (
        '<form action="/search" method="get">\n'
        '  <label for="q">Search</label>\n'
        '  <input id="q" name="q" type="search" placeholder="Suche…">\n'
        "</form>"
    ),
    (
        "FROM python:3.12-slim\n"
        "WORKDIR /app\n"
        "COPY requirements.txt .\n"
        "RUN pip install --no-cache-dir -r requirements.txt\n"
        "COPY . .\n"
        'CMD ["gunicorn", "-b", "0.0.0.0:8000", "app:server"]\n'
    ),
)

# ------------------------------------------------------------------------------------------------------------
# Numbers: tables, prices, dates, units, IDs, measurements, logs.
# ------------------------------------------------------------------------------------------------------------
_NUMBERS: tuple[str, ...] = (
    "Invoice #INV-2024-00871 | Date: 2024-03-15 | Net: €1.240,00 | VAT 19%: €235,60 | Total: €1.475,60",
    (
        "city,country,population,area_km2\n"
        "Lyon,FR,522250,47.87\n"
        "Porto,PT,231800,41.42\n"
        "Kraków,PL,804237,326.8\n"
        "Osaka,JP,2752412,225.21\n"
    ),
    (
        "| Food (100 g) | kcal | protein | fat | carbs |\n"
        "|---|---|---|---|---|\n"
        "| Oats | 389 | 16.9 g | 6.9 g | 66.3 g |\n"
        "| Lentils, cooked | 116 | 9.0 g | 0.4 g | 20.1 g |\n"
        "| Cheddar | 403 | 24.9 g | 33.1 g | 1.3 g |"
    ),
    "Flight LH 2041 departs 07:35 CET from gate B17, arrives 09:10; seat 23C; booking ref X7K2QP.",
    "Tracking number 1Z 84F 7W3 02 9931 5527 — estimated delivery Tue 12 Nov, 09:00–13:00.",
    "BP 142/91 mmHg, HR 78 bpm, SpO2 97%, temp 37.8 °C, weight 82.4 kg, BMI 26.9, HbA1c 6.1%.",
    "Scaled ×3: 750 g flour, 450 ml water, 15 g salt, 6 g dry yeast; bake 35 min at 230 °C (450 °F).",
    "ACME 189.43 +1.27 (+0.68%) | GLBX 415.10 −2.05 (−0.49%) | NRTH 72.88 +0.00 (0.00%) | vol 12.4M",
    "ISBN 978-0-306-40615-7, DOI 10.5555/12345678, ORCID 0000-0003-4821-7760, arXiv:2310.01234v2",
    "Account: NL91 ABNA 0417 1643 00 · BIC ABNANL2A · reference 2024-Q3-0178 · amount 3,250.00 EUR",
    "2025-01-07 · 07/01/2025 · Jan 7, 2025 · 7. Januar 2025 · 2025年1月7日 · 7 janvier 2025 · 07.01.25",
    "Final score 3–2 (HT 1–1); possession 58% / 42%; shots 14 (6 on target) vs 9 (3); corners 7–4.",
    "Distance 42.195 km; pace 4:58 min/km; finish 3:29:41; cadence 176 spm; elevation gain +312 m.",
    (
        "2024-11-02T03:14:07.512Z WARN  [api-7f9c] 10.0.4.17 GET /v2/orders?page=3 429 12ms\n"
        "2024-11-02T03:14:07.530Z ERROR [api-7f9c] 10.0.4.17 POST /v2/orders 503 2004ms upstream=timeout\n"
        "2024-11-02T03:14:08.001Z INFO  [api-2b11] 10.0.9.3  GET /healthz 200 1ms"
    ),
    "request_id=3f9c2a7e-8b41-4d6a-9e0f-5c7b1a2d4e86 sha256=9b1f0c4e7a2d… size=1 048 576 B crc32=0x7D3A91C2",
    "某市2023年末常住人口为1253.6万人，比上年末增加8.4万人，增长0.67%；人均可支配收入52,310元。",
    "価格：税込 3,980円（本体 3,619円＋消費税 361円）／送料無料／在庫残り 4 点／2024年11月28日発送",
    "Öffnungszeiten: Mo–Fr 08:00–18:30, Sa 09:00–14:00, So geschlossen · Tel. +49 30 5550 1234-0",
    "Loyer : 1 150 € charges comprises ; dépôt de garantie : 2 300 € ; surface : 48,5 m² ; DPE : C",
    "Курс на 15.03.2024: 1 USD = 91,83 ₽, 1 EUR = 100,12 ₽; изменение за день −0,27 %.",
    "السعر: ٢٥٠ ريالًا، الخصم ١٥٪، الإجمالي ٢١٢٫٥٠ ريالًا — رقم الطلب ٧٨٤٣٢ — التاريخ ٢٠٢٤/٠٥/١٢",
    "कुल राशि: ₹12,450.00 (18% GST सहित), बिल संख्या: GST/2024/0457, दिनांक: 05-08-2024",
    "2024년 3분기 매출 1조 2,340억 원, 영업이익 1,870억 원(전년 대비 +12.4%), 순이익률 9.8%",
    (
        "1 mile = 1.609 km; 1 lb = 0.4536 kg; 1 US gal = 3.785 L; 0 °C = 32 °F; 1 hp ≈ 745.7 W; "
        "1 kn ≈ 1.852 km/h"
    ),
    "c = 299 792 458 m/s; G = 6.674×10⁻¹¹ N·m²/kg²; h = 6.626×10⁻³⁴ J·s; k_B = 1.381×10⁻²³ J/K",
    (
        "Train   Dep.   Arr.   Platform  Note\n"
        "ICE 577 06:12  09:48  7         Bordbistro\n"
        "IC 2013 07:05  11:31  4a        +10 min\n"
        "RE 4417 07:20  10:59  12        cancelled"
    ),
    "48.8584° N, 2.2945° E; altitude 35 m; UTC+01:00; sunrise 2024-06-21T05:47:00+02:00, sunset 21:58",
    (
        "Revenue            2023        2022      Δ%\n"
        "Product       1,204.6     1,018.2   +18.3\n"
        "Services        388.1       402.7    −3.6\n"
        "Total         1,592.7     1,420.9   +12.1   (EUR m)"
    ),
    "Factura nº 2024/0193 — Base imponible: 845,00 € — IVA (21 %): 177,45 € — Total: 1.022,45 €",
    "Ticket 04-17-23-38-41 + 09; draw #2871 on 2024-09-14; jackpot $48,500,000 (cash value $22.3M)",
    (
        "Pos Team            P  W  D  L  GF:GA  Pts\n"
        " 1  Riverside FC   12  9  2  1  27:9    29\n"
        " 2  Northport      12  8  3  1  22:11   27\n"
        " 3  Old Harbour    12  7  1  4  19:15   22"
    ),
    "Python 3.11.9, torch 2.3.1+cu121, CUDA 12.1, driver 550.54.15, cuDNN 8.9.2, 2×A100 80GB, RAM 512 GiB",
    "Dosage: 5 mg/kg every 8 h (max 40 mg/kg/day); child 18 kg → 90 mg per dose; syrup 120 mg/5 ml → 3.75 ml",
)


def _build_kinds() -> dict[str, tuple[str, ...]]:
    passages = [p for lang, count in _PASSAGE_COUNTS.items() for p in _passages(lang, count)]
    kinds = {
        "query": _QUERIES,
        "sentence": _SENTENCES,
        "passage": (*passages, *_LONG_FORM),
        "code": _CODE,
        "numbers": _NUMBERS,
    }
    seen: set[str] = set()
    for kind, texts in kinds.items():
        for text in texts:
            if not text.strip() or text in seen:
                raise ValueError(f"calibration corpus: empty or duplicate {kind} text: {text[:60]!r}")
            seen.add(text)
    return kinds


KINDS: dict[str, tuple[str, ...]] = _build_kinds()
CORPUS: tuple[str, ...] = tuple(text for texts in KINDS.values() for text in texts)
